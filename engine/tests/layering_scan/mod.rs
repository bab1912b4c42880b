//! The layering test's source scanner: comments and literals taken out, `#[cfg(test)]`
//! modules dropped, the functions a file defines and the calls it makes, read from the text
//! (no parser crate: the test reads the engine's own files, whose shapes are known).

/// Whether `code` imports `name` from proxy file `file` (`use super::file::name`, in a group,
/// or by glob).
pub fn imports(code: &str, file: &str, name: &str) -> bool {
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
pub fn strip(src: &str) -> String {
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
pub fn without_test_modules(code: &str) -> String {
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
pub struct Definitions {
    /// Functions in an `impl Engine` block (methods and associated functions).
    pub engine_methods: Vec<String>,
    /// Functions at the top level of the file.
    pub free_fns: Vec<String>,
}

pub fn definitions(code: &str) -> Definitions {
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
pub enum Target {
    /// `self.f(`, `Self::f(`, `Engine::f(`: a method of the engine.
    Engine,
    /// `module::f(`: a free function of that module.
    Path(String),
    /// `f(`: a free function in scope.
    Bare,
}

#[derive(Debug, PartialEq)]
pub struct Call {
    pub name: String,
    pub target: Target,
}

/// Every call in `code` that may reach another proxy file (method calls on values other than
/// `self` are calls into data types, not into the engine's files).
pub fn calls(code: &str) -> Vec<Call> {
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
