//! The layering of `src/`, kept by a test rather than by hope (see `docs/architecture.md`).
//!
//! It reads the source as text, the way `module-circles` does: every `use crate::…`,
//! `use super::…`, `use self::…` and inline `crate::a::b` path is an arrow from the file that
//! writes it to the file of the module it names. Test modules, comments and strings are left out.
//! It fails on a circle between files, an import that runs up the layers, storage or domain code
//! reaching out of its place, and a function over 80 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level modules from the top down: a file may import its own layer and those below it.
const LAYERS: &[&str] = &["sim", "web", "actors", "flows", "pay", "mq", "device", "db", "cache", "domain"];

/// The longest a function may be, in lines, outside the simulators and configuration checks.
const MAX_FN_LINES: usize = 80;

type Module = Vec<String>;

struct Source {
    path: PathBuf,
    /// The file's code without its test module, comments and string contents.
    code: String,
    /// `mod.rs`, `lib.rs`, `main.rs`: a folder's module.
    folder: bool,
}

fn sources() -> BTreeMap<Module, Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src).expect("under src").with_extension("");
                let mut module: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                let folder = matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main"));
                if folder {
                    module.pop();
                }
                let code = strip(&fs::read_to_string(&path).expect("read file"));
                out.insert(module, Source { path, code, folder });
            }
        }
    }
    out
}

/// The code without a trailing `#[cfg(test)] mod …`, comments, and the contents of strings and
/// character literals.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ").or_else(|| text.find("#[cfg(test)]\npub mod ")) {
        Some(i) => &text[..i],
        None => text,
    };
    let (mut out, mut chars) = (String::with_capacity(text.len()), text.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    if c == '\n' {
                        out.push('\n');
                    }
                    last = c;
                }
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
                out.push('"');
            }
            // A character literal ('{', '"', '\''), not a lifetime ('a).
            '\'' if chars.peek() == Some(&'\\') || matches!(chars.clone().nth(1), Some('\'')) => {
                if chars.next() == Some('\\') {
                    chars.next();
                }
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                out.push_str("' '");
            }
            c => out.push(c),
        }
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        out.extend(tree.split(',').filter(|p| !p.is_empty()).map(|p| format!("{prefix}{p}")));
        return;
    };
    let (mut depth, mut close) = (0, tree.len());
    for (i, c) in tree.char_indices().skip(open) {
        depth += match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        };
        if depth == 0 {
            close = i;
            break;
        }
    }
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..close];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_into(&head, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand_into(&head, &inner[start..], out);
    if let Some(rest) = tree[close + 1..].strip_prefix(',') {
        expand_into(prefix, rest, out);
    }
}

/// Each `use` statement (whether it is a `pub use`, and its expanded paths), then the inline
/// `crate::…` and `super::…` paths.
fn imports(code: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = find_word(rest, "use") {
        let before = rest[..i].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
        let Some(end) = rest[i..].find(';') else { break };
        out.extend(expand(&rest[i + 3..i + end]).into_iter().map(|p| (public, p)));
        rest = &rest[i + end..];
    }
    for start in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(start) {
            let i = at + i;
            at = i + start.len();
            if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String =
                code[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            out.push((false, path));
        }
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = text[at..].find(word) {
        let i = at + i;
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after.is_some_and(char::is_whitespace) {
            return Some(i);
        }
        at = i + word.len();
    }
    None
}

/// The files each file imports.
fn arrows(files: &BTreeMap<Module, Source>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut out = BTreeMap::new();
    for (module, source) in files {
        let mut targets = BTreeSet::new();
        for (public, path) in imports(&source.code) {
            let path = path.split(" as ").next().unwrap_or_default().trim_end_matches(':').to_string();
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty() && *s != "*").collect();
            let absolute: Module = match segs.first() {
                Some(&"crate") => segs[1..].iter().map(|s| s.to_string()).collect(),
                Some(&"super") => {
                    let mut up = module[..module.len().saturating_sub(1)].to_vec();
                    let mut rest = &segs[1..];
                    while rest.first() == Some(&"super") {
                        up.pop();
                        rest = &rest[1..];
                    }
                    up.extend(rest.iter().map(|s| s.to_string()));
                    up
                }
                Some(&"self") if source.folder => {
                    module.iter().cloned().chain(segs[1..].iter().map(|s| s.to_string())).collect()
                }
                _ => continue,
            };
            let Some(target) =
                (1..=absolute.len()).rev().map(|k| absolute[..k].to_vec()).find(|m| files.contains_key(m))
            else {
                continue;
            };
            // A folder's module handing on its own children's names is not a dependency.
            let hands_on = public && source.folder && target.starts_with(module);
            if target != *module && !hands_on {
                targets.insert(target);
            }
        }
        out.insert(module.clone(), targets);
    }
    out
}

/// Groups of files that import each other in a circle (Tarjan's strongly connected components).
fn circles(arrows: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        arrows: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.arrows.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk { arrows, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in arrows.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn layer(module: &Module) -> Option<usize> {
    LAYERS.iter().position(|l| module.first().is_some_and(|m| m == l))
}

fn name(module: &Module) -> String {
    module.join("::")
}

#[test]
fn no_file_imports_another_in_a_circle() {
    let files = sources();
    assert!(files.len() > 50, "found {} files under src/", files.len());
    let found: Vec<String> =
        circles(&arrows(&files)).iter().map(|g| g.iter().map(name).collect::<Vec<_>>().join(" ↔ ")).collect();
    assert!(found.is_empty(), "circles:\n{}", found.join("\n"));
}

#[test]
fn imports_run_down_the_layers() {
    let files = sources();
    let mut up = Vec::new();
    for (from, targets) in arrows(&files) {
        for to in targets {
            if let (Some(a), Some(b)) = (layer(&from), layer(&to))
                && b < a
            {
                up.push(format!("{} → {}", name(&from), name(&to)));
            }
        }
    }
    assert!(up.is_empty(), "imports up the layers ({}):\n{}", LAYERS.join(" → "), up.join("\n"));
}

#[test]
fn the_domain_is_pure_and_storage_only_stores() {
    let files = sources();
    let arrows = arrows(&files);
    let mut wrong = Vec::new();
    for (module, source) in &files {
        let targets = &arrows[module];
        let outside = |allowed: &[&str]| {
            targets.iter().filter(|t| !allowed.contains(&t[0].as_str())).map(name).collect::<Vec<_>>()
        };
        match module.first().map(String::as_str) {
            Some("domain") => {
                for t in outside(&["domain"]) {
                    wrong.push(format!("{}: domain imports {t}", name(module)));
                }
                for io in ["diesel", "actix", "actix_web", "tokio", "reqwest", "redis", "lapin"] {
                    if imports_crate(&source.code, io) {
                        wrong.push(format!("{}: domain uses {io}", source.path.display()));
                    }
                }
            }
            Some("db") => {
                for t in outside(&["db", "domain"]) {
                    wrong.push(format!("{}: storage imports {t}", name(module)));
                }
                // One storage module does not call another's: each stores its own tables. The
                // shared pieces (`db/mod.rs`, models, schema, column mappings) are what they share.
                let shared = ["models", "schema", "columns"];
                for t in targets.iter().filter(|t| t[0] == "db" && t.len() > 1 && !shared.contains(&t[1].as_str())) {
                    if module.len() > 1 && t != module {
                        wrong.push(format!("{}: storage calls {}", name(module), name(t)));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn imports_crate(code: &str, krate: &str) -> bool {
    let needle = format!("{krate}::");
    code.match_indices(&needle)
        .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'))
}

/// Functions of more than [`MAX_FN_LINES`] lines, as `path:line name (lines)`.
fn long_functions(source: &Source) -> Vec<String> {
    let lines: Vec<&str> = source.code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = fn_name(lines[i]) else {
            i += 1;
            continue;
        };
        let (mut depth, mut opened, mut j) = (0i32, false, i);
        while j < lines.len() {
            for c in lines[j].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth <= 0) || (!opened && lines[j].trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        let n = j - i + 1;
        if opened && n > MAX_FN_LINES {
            out.push(format!("{}:{} {name} ({n} lines)", source.path.display(), i + 1));
        }
        i = if opened { j + 1 } else { i + 1 };
    }
    out
}

fn fn_name(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "fn" => return words.next().map(|n| n.split(['(', '<']).next().unwrap_or(n)),
            "pub" | "async" | "const" | "unsafe" | "extern" => {}
            w if w.starts_with("pub(") => {}
            _ => return None,
        }
    }
    None
}

#[test]
fn functions_fit_on_a_screen() {
    let long: Vec<String> = sources()
        .iter()
        // The simulators play whole scenarios; the configuration's checks are one list.
        .filter(|(module, _)| module.first().is_none_or(|m| m != "sim"))
        .flat_map(|(_, source)| long_functions(source))
        .filter(|f| !(f.contains("src/config.rs") && f.contains(" validate ")))
        .collect();
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_reading_finds_what_it_should() {
    // The reader itself, so that a test that passes means something.
    assert_eq!(expand("a::{b, c::{d, e}}"), ["a::b", "a::c::d", "a::c::e"]);
    let code = strip("use crate::db::{self, models::Order};\n// use crate::web;\nlet s = \"crate::pay\";");
    let found: Vec<String> = imports(&code).into_iter().map(|(_, p)| p).collect();
    assert!(found.contains(&"crate::db::self".to_string()), "{found:?}");
    assert!(found.contains(&"crate::db::models::Order".to_string()), "{found:?}");
    assert!(!found.iter().any(|p| p.contains("web") || p.contains("pay")), "comments and strings: {found:?}");
    let mut arrows = BTreeMap::new();
    let m = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    arrows.insert(m("a"), BTreeSet::from([m("b")]));
    arrows.insert(m("b"), BTreeSet::from([m("a")]));
    arrows.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(circles(&arrows).len(), 1);
    let long =
        Source { path: "x.rs".into(), code: format!("fn f() {{\n{}}}\n", "    x();\n".repeat(80)), folder: false };
    assert_eq!(long_functions(&long).len(), 1);
}
