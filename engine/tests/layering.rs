//! The proxy's files are layered (the diagram in `src/proxy/mod.rs`'s module docs): each file
//! calls only files listed below it, so no two files call each other both ways, and the files
//! the diagram leaves out (data and views) call no engine logic at all.
//!
//! This test reads the sources: it finds which file defines each method of `impl Engine` and
//! each free function, then every call of them from another file (`self.f(`, `Self::f(`,
//! `Engine::f(`, `file::f(`, and `f(` where the caller imports `f` from that file), with
//! comments, string and char literals and `#[cfg(test)]` modules taken out first. A violation
//! names the caller, the callee and the function.

mod layering_scan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use layering_scan::{
    calls, definitions, imports, strip, without_test_modules, Definitions, Target,
};

#[test]
fn proxy_files_call_only_files_listed_below_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/proxy is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        // Test files call whatever they test.
        if stem == "tests" || stem.ends_with("_tests") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("a proxy source file");
        files.push((stem.to_string(), source));
    }
    files.sort();
    let mod_rs = &files
        .iter()
        .find(|(name, _)| name == "mod")
        .expect("src/proxy/mod.rs")
        .1;
    let layers = declared_layers(mod_rs);
    assert!(
        layers.len() >= 10,
        "the layering diagram of src/proxy/mod.rs was not found: {layers:?}"
    );
    for layer in &layers {
        assert!(
            files.iter().any(|(name, _)| name == layer),
            "the diagram lists `{layer}`, which is not a file of src/proxy"
        );
    }
    let graph = CallGraph::of(&files);
    // The scan must see the calls that are known to be there, or it checks nothing.
    assert!(
        graph.has_edge("dispatch", "downstream", "on_downstream_data"),
        "the scan misses dispatch's calls: {:?}",
        graph.edges
    );
    assert!(
        graph.has_edge("routing", "head_edits", "prepare_upstream_head"),
        "the scan misses imported free functions: {:?}",
        graph.edges
    );
    assert!(
        graph.ambiguous.is_empty(),
        "calls of these names cannot be told apart (defined in several files): {:?}",
        graph.ambiguous
    );
    let found = violations(&layers, &graph);
    assert!(
        found.is_empty(),
        "the proxy's layering is broken (fix the call or move the function; a new file goes \
         into the diagram of src/proxy/mod.rs):\n{}",
        found.join("\n")
    );
}

/// The file names of the layering diagram, top first: the first word of each line of the
/// `text` block that follows "Files are layered".
fn declared_layers(mod_rs: &str) -> Vec<String> {
    let docs: Vec<&str> = mod_rs
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .collect();
    let Some(start) = docs.iter().position(|l| l.contains("Files are layered")) else {
        return Vec::new();
    };
    docs[start..]
        .iter()
        .skip_while(|l| l.trim() != "```text")
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

/// Every listed-order breach: a file calling one listed above it, a file outside the diagram
/// calling one in it, and (whatever the diagram says) two files calling each other.
fn violations(layers: &[String], graph: &CallGraph) -> Vec<String> {
    let rank = |file: &str| layers.iter().position(|l| l == file);
    let mut out = Vec::new();
    for (caller, callee, function) in &graph.edges {
        match (rank(caller), rank(callee)) {
            (Some(from), Some(to)) if to < from => out.push(format!(
                "{caller} calls {callee}::{function}, but {callee} is listed above {caller}"
            )),
            (None, Some(_)) => out.push(format!(
                "{caller} (not in the diagram: data or a view) calls engine logic \
                 {callee}::{function}"
            )),
            _ => {}
        }
    }
    let pairs: BTreeSet<(&str, &str)> = graph
        .edges
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    for &(a, b) in &pairs {
        if a < b && pairs.contains(&(b, a)) {
            let one = graph.first_call(a, b);
            let other = graph.first_call(b, a);
            out.push(format!(
                "{a} and {b} call each other: {a} calls {b}::{one}, {b} calls {a}::{other}"
            ));
        }
    }
    out
}

/// Which file calls which file's function.
struct CallGraph {
    /// (caller, callee, function), sorted, each once.
    edges: BTreeSet<(String, String, String)>,
    /// Names defined in more than one file: calls of them are not attributed.
    ambiguous: BTreeSet<String>,
}

impl CallGraph {
    fn of(files: &[(String, String)]) -> CallGraph {
        let code: Vec<(String, String)> = files
            .iter()
            .map(|(name, src)| (name.clone(), without_test_modules(&strip(src))))
            .collect();
        let mut methods: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut free: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, code) in &code {
            let defs = definitions(code);
            for m in defs.engine_methods {
                methods.entry(m).or_default().insert(file.clone());
            }
            for f in defs.free_fns {
                free.entry(f).or_default().insert(file.clone());
            }
        }
        let mut ambiguous = BTreeSet::new();
        let unique = |map: &BTreeMap<String, BTreeSet<String>>,
                      ambiguous: &mut BTreeSet<String>,
                      name: &str|
         -> Option<String> {
            let defined = map.get(name)?;
            if defined.len() > 1 {
                ambiguous.insert(name.to_string());
                return None;
            }
            defined.iter().next().cloned()
        };
        let mut edges = BTreeSet::new();
        for (caller, code) in &code {
            for call in calls(code) {
                let callee = match &call.target {
                    Target::Engine => unique(&methods, &mut ambiguous, &call.name),
                    Target::Path(module) => free
                        .get(&call.name)
                        .filter(|defined| defined.contains(module))
                        .map(|_| module.clone()),
                    Target::Bare => {
                        let Some(defined) = free.get(&call.name) else {
                            continue;
                        };
                        if defined.contains(caller) {
                            continue;
                        }
                        // A bare call reaches another proxy file's function only through an
                        // import of it; a same-named function imported from elsewhere is not
                        // an edge.
                        let imported: Vec<&String> = defined
                            .iter()
                            .filter(|file| imports(code, file, &call.name))
                            .collect();
                        match imported.as_slice() {
                            [one] => Some((*one).clone()),
                            [] => None,
                            _ => {
                                ambiguous.insert(call.name.clone());
                                None
                            }
                        }
                    }
                };
                if let Some(callee) = callee.filter(|c| c != caller) {
                    edges.insert((caller.clone(), callee, call.name));
                }
            }
        }
        CallGraph { edges, ambiguous }
    }

    fn has_edge(&self, caller: &str, callee: &str, function: &str) -> bool {
        self.edges
            .contains(&(caller.into(), callee.into(), function.into()))
    }

    fn first_call(&self, caller: &str, callee: &str) -> &str {
        self.edges
            .iter()
            .find(|(a, b, _)| a == caller && b == callee)
            .map_or("?", |(_, _, f)| f.as_str())
    }
}

// ---- the scanner's own tests: it must see what it claims to see ----

fn graph_of(files: &[(&str, &str)]) -> CallGraph {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    CallGraph::of(&files)
}

fn layers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_upward_call_and_a_two_way_pair_are_named() {
    let graph = graph_of(&[
        (
            "top",
            "impl Engine { fn handle(&mut self) { self.low(); } }",
        ),
        (
            "low",
            "impl Engine { pub(super) fn low(&mut self) { self.handle(); } }",
        ),
    ]);
    let found = violations(&layers(&["top", "low"]), &graph);
    assert!(
        found
            .iter()
            .any(|v| v == "low calls top::handle, but top is listed above low"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|v| v == "low and top call each other: low calls top::handle, top calls low::low"),
        "{found:?}"
    );
    // Downward only: clean.
    let graph = graph_of(&[
        (
            "top",
            "impl Engine { fn handle(&mut self) { self.low(); } }",
        ),
        ("low", "impl Engine { pub(super) fn low(&mut self) {} }"),
    ]);
    assert!(violations(&layers(&["top", "low"]), &graph).is_empty());
}

#[test]
fn comments_strings_and_test_modules_are_not_calls() {
    let low = "impl Engine { pub(super) fn low(&mut self) {} }\n\
               pub(super) fn helper() {}";
    let top = "impl Engine {\n\
               fn handle(&mut self) {\n\
               // self.low();\n\
               /* self.low(); /* nested */ helper(); */\n\
               let s = \"self.low()\"; let r = r#\"helper()\"#; let c = '{';\n\
               }\n\
               }\n\
               #[cfg(test)]\n\
               mod tests { fn t() { helper(); } }";
    let graph = graph_of(&[("top", top), ("low", low)]);
    assert!(graph.edges.is_empty(), "{:?}", graph.edges);
}

#[test]
fn free_functions_count_through_paths_and_imports_only() {
    let low = "pub(super) fn helper() {}";
    let imported = "use super::low::{helper, Other};\nfn f() { helper(); }";
    let by_path = "fn f() { super::low::helper(); }";
    // Another `helper` in scope from elsewhere is not the proxy file's.
    let elsewhere = "use crate::util::helper;\nfn f() { helper(); }";
    let on_a_value = "fn f(x: X) { x.helper(); }";
    let graph = graph_of(&[
        ("low", low),
        ("imported", imported),
        ("by_path", by_path),
        ("elsewhere", elsewhere),
        ("on_a_value", on_a_value),
    ]);
    let edges: Vec<(&str, &str)> = graph
        .edges
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(edges, [("by_path", "low"), ("imported", "low")]);
}

#[test]
fn a_file_outside_the_diagram_may_not_call_engine_logic() {
    let graph = graph_of(&[
        ("top", "impl Engine { fn handle(&mut self) {} }"),
        (
            "view",
            "impl Engine { fn peek(&self) { Self::handle(self); } }",
        ),
    ]);
    let found = violations(&layers(&["top"]), &graph);
    assert_eq!(
        found,
        ["view (not in the diagram: data or a view) calls engine logic top::handle"]
    );
}

#[test]
fn only_engine_impls_and_top_level_fns_are_definitions() {
    let defs = definitions(
        "impl Engine { fn a(&self) { fn inner() {} } }\n\
         impl Other { fn b(&self) {} }\n\
         impl<'x> Engine { fn c(&self) {} }\n\
         fn d() {}",
    );
    assert_eq!(
        defs,
        Definitions {
            engine_methods: vec!["a".into(), "c".into()],
            free_fns: vec!["d".into()],
        }
    );
}
