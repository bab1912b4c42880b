//! The proxy's files are layered (the diagram in `src/proxy/mod.rs`'s module docs): each file
//! calls only files listed below it, so no two files call each other both ways, and the files
//! the diagram leaves out (data and views) call no engine logic at all.
//!
//! This test reads the sources: it finds which file defines each method of `impl Engine` and
//! each free function, then every call of them from another file (`self.f(`, `Self::f(`,
//! `Engine::f(`, `file::f(`, and `f(` where the caller imports `f` from that file), with
//! comments, string and char literals and `#[cfg(test)]` modules taken out first. A violation
//! names the caller, the callee and the function.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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

/// Whether `code` imports `name` from proxy file `file` (`use super::file::name`, in a group,
/// or by glob).
fn imports(code: &str, file: &str, name: &str) -> bool {
    let prefix = format!("super::{file}::");
    code.split(';')
        .map(str::trim)
        .filter(|stmt| stmt.starts_with("use ") || stmt.starts_with("pub(super) use "))
        .filter_map(|stmt| stmt.find(&prefix).map(|at| &stmt[at + prefix.len()..]))
        .any(|rest| {
            rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '*'))
                .any(|word| word == name || word == "*")
        })
}

/// The source with comments removed and string and char literals emptied, so that neither
/// text nor braces inside them are read as code.
fn strip(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && (i == 0
                || !ident(chars[i - 1])
                || (chars[i - 1] == 'b' && (i < 2 || !ident(chars[i - 2]))))
        {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while j < chars.len() && !chars[j..].starts_with(&closing) {
                j += 1;
            }
            out.push_str("\"\"");
            i = j + closing.len();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime or label.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without its `#[cfg(test)] mod name { … }` blocks (a test module calls what it tests).
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let words: Vec<&str> = after.split_whitespace().take(3).collect();
        let is_inline_module = words.first() == Some(&"mod")
            && words.get(1).is_some_and(|w| {
                w.ends_with('{') || words.get(2).is_some_and(|w| w.starts_with('{'))
            });
        if !is_inline_module {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        let Some(open) = after.find('{') else {
            break;
        };
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The functions a file defines that other files may call.
#[derive(Debug, Default, PartialEq)]
struct Definitions {
    /// Functions in an `impl Engine` block (methods and associated functions).
    engine_methods: Vec<String>,
    /// Functions at the top level of the file.
    free_fns: Vec<String>,
}

fn definitions(code: &str) -> Definitions {
    #[derive(Clone, Copy, PartialEq)]
    enum Block {
        EngineImpl,
        Other,
    }
    let mut defs = Definitions::default();
    let mut stack: Vec<Block> = Vec::new();
    // The words since the last `;`, `{` or `}`: an item's header when a `{` opens its body.
    let mut header: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut after_fn = false;
    for ch in code.chars().chain(std::iter::once(' ')) {
        if ch.is_alphanumeric() || ch == '_' {
            word.push(ch);
            continue;
        }
        if !word.is_empty() {
            if after_fn {
                match stack.as_slice() {
                    [] => defs.free_fns.push(word.clone()),
                    [Block::EngineImpl] => defs.engine_methods.push(word.clone()),
                    _ => {}
                }
            }
            after_fn = word == "fn";
            header.push(std::mem::take(&mut word));
        }
        match ch {
            '{' => {
                let engine_impl = header.first().is_some_and(|w| w == "impl")
                    && header.last().is_some_and(|w| w == "Engine");
                stack.push(if engine_impl {
                    Block::EngineImpl
                } else {
                    Block::Other
                });
                header.clear();
            }
            '}' => {
                stack.pop();
                header.clear();
            }
            ';' => header.clear(),
            _ => {}
        }
    }
    defs
}

/// How a call names what it calls.
#[derive(Debug, PartialEq)]
enum Target {
    /// `self.f(`, `Self::f(`, `Engine::f(`: a method of the engine.
    Engine,
    /// `module::f(`: a free function of that module.
    Path(String),
    /// `f(`: a free function in scope.
    Bare,
}

#[derive(Debug, PartialEq)]
struct Call {
    name: String,
    target: Target,
}

/// Every call in `code` that may reach another proxy file (method calls on values other than
/// `self` are calls into data types, not into the engine's files).
fn calls(code: &str) -> Vec<Call> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let name = &code[start..i];
        // The call's parenthesis, after an optional turbofish.
        let mut j = i;
        if code[j..].starts_with("::<") {
            let mut depth = 0;
            while j < bytes.len() {
                match bytes[j] {
                    b'<' => depth += 1,
                    b'>' => {
                        depth -= 1;
                        if depth == 0 {
                            j += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        if bytes.get(j) != Some(&b'(') || name.as_bytes()[0].is_ascii_digit() {
            continue;
        }
        let before = code[..start].trim_end();
        if before.ends_with("fn") && !before[..before.len() - 2].ends_with(|c: char| ident(c as u8))
        {
            continue; // a definition
        }
        let target = if let Some(receiver) = before.strip_suffix('.') {
            if !receiver.trim_end().ends_with("self")
                || receiver
                    .trim_end()
                    .strip_suffix("self")
                    .is_some_and(|r| r.ends_with(|c: char| ident(c as u8) || c == '.'))
            {
                continue;
            }
            Target::Engine
        } else if let Some(path) = before.strip_suffix("::") {
            let module: String = path
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            match module.as_str() {
                "Self" | "Engine" => Target::Engine,
                _ => Target::Path(module),
            }
        } else {
            Target::Bare
        };
        out.push(Call {
            name: name.to_string(),
            target,
        });
    }
    out
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
