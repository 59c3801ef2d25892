//! The module graph of the crate, read from the source text: which top-level module of `src/`
//! refers to which. The check fails when modules refer to each other in a cycle, printing each
//! cycle (`a -> b -> a`) and, for each of its edges, the first place (`file:line`) that makes
//! it; and when `settings`, the bottom module, refers to any other module of the crate.
//!
//! The top-level modules are the `mod` declarations of `src/lib.rs`. Every other `.rs` file
//! under `src/` belongs to the top-level module its path starts with (`src/config.rs` to
//! `config`, `src/tail/tailer.rs` to `tail`); `src/lib.rs` and `src/main.rs` are the roots and
//! are not part of the graph.
//!
//! A reference from module A to module B (B not A) is any of:
//! - a path `crate::B…` (or `$crate::B…` in a macro), and each `B` of a group
//!   `crate::{B::…, C}`;
//! - a path of `super::`s that climbs out of A to the crate root, then names `B` (or a group);
//! - the same paths as the whole text of a string literal, as serde's
//!   `#[serde(default = "crate::settings::default_true")]` names a function;
//! - a path to a macro exported at the crate root (`#[macro_export]`), such as
//!   `crate::traced_span!`: a reference to the module that defines the macro;
//! - a path to a name that `src/lib.rs` re-exports (`pub use b::Thing;`): a reference to `b`.
//!
//! Comments and doc comments do not count, nor do other string literals. `#[cfg(test)]`
//! modules (inline, or files declared `#[cfg(test)] mod name;`) are left out: tests may use
//! any module's helpers, and the graph is the one the program is built from.
//!
//! Plain Rust with no dependency: a small lexer (comments, strings, raw strings, chars and
//! lifetimes) and a reader of paths; the unit tests at the end check both, and the cycle finder,
//! on tiny synthetic inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

// --- the checks -------------------------------------------------------------------------------

#[test]
fn the_top_level_modules_refer_to_each_other_without_cycles() {
    let graph = Graph::of_crate(&manifest_dir().join("src"));
    if let Some(report) = cycle_report(&graph) {
        panic!("{report}");
    }
}

/// Each cycle of the graph with the first place of each of its edges, then every edge; `None`
/// when there is no cycle.
fn cycle_report(graph: &Graph) -> Option<String> {
    let cycles = find_cycles(&graph.edges.keys().cloned().collect());
    if cycles.is_empty() {
        return None;
    }
    let mut report = format!(
        "the top-level modules of src/ refer to each other in {} cycle(s):\n",
        cycles.len()
    );
    for cycle in &cycles {
        let _ = writeln!(report, "\n  {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            let edge = (pair[0].clone(), pair[1].clone());
            let _ = writeln!(
                report,
                "      {} -> {}  first at {}",
                edge.0, edge.1, graph.edges[&edge]
            );
        }
    }
    let _ = writeln!(
        report,
        "\nevery reference between top-level modules ({} modules: {}):",
        graph.modules.len(),
        graph.modules.join(", ")
    );
    for ((from, to), at) in &graph.edges {
        let _ = writeln!(report, "  {from} -> {to}  first at {at}");
    }
    Some(report)
}

#[test]
fn settings_refers_to_no_other_module() {
    let graph = Graph::of_crate(&manifest_dir().join("src"));
    assert!(
        graph.modules.iter().any(|m| m == "settings"),
        "src/lib.rs declares no module `settings`: {:?}",
        graph.modules
    );
    let out: Vec<String> = graph
        .edges
        .iter()
        .filter(|((from, _), _)| from == "settings")
        .map(|((_, to), at)| format!("settings -> {to}  first at {at}"))
        .collect();
    assert!(
        out.is_empty(),
        "settings is the bottom module and must refer to no other module of the crate:\n  {}",
        out.join("\n  ")
    );
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// --- the graph --------------------------------------------------------------------------------

/// The top-level modules and the references between them.
struct Graph {
    /// The top-level modules, in the order `src/lib.rs` declares them.
    modules: Vec<String>,
    /// Every reference from one top-level module to another, with the first place (`file:line`,
    /// files in path order) that makes it.
    edges: BTreeMap<(String, String), String>,
}

/// A source file of a top-level module.
struct SourceFile {
    /// The path shown in messages (`src/tail/tailer.rs`).
    shown: String,
    /// The module path (`["tail", "tailer"]`).
    module_path: Vec<String>,
    tokens: Vec<Token>,
}

impl Graph {
    /// Reads `src/lib.rs` and every `.rs` file below `src`.
    fn of_crate(src: &Path) -> Graph {
        let lib = read(&src.join("lib.rs"));
        let root = read_root(&lex(&lib));
        assert!(
            !root.modules.is_empty(),
            "no `mod` declarations found in src/lib.rs"
        );
        let mut paths = Vec::new();
        rust_files(src, &mut paths);
        paths.sort();
        let files: Vec<SourceFile> = paths
            .iter()
            .filter_map(|path| {
                let rel = path.strip_prefix(src).expect("below src/");
                let module_path = module_path_of(rel)?;
                root.modules.contains(&module_path[0]).then(|| SourceFile {
                    shown: format!("src/{}", rel.display()),
                    module_path,
                    tokens: lex(&read(path)),
                })
            })
            .collect();
        Graph::build(root, &files)
    }

    /// The graph of `files`, given what the crate root declares.
    fn build(root: Root, files: &[SourceFile]) -> Graph {
        let scans: Vec<Scan> = files
            .iter()
            .map(|f| scan(&f.tokens, &f.module_path))
            .collect();
        // Macros exported at the crate root belong to the module that defines them; files
        // declared as `#[cfg(test)] mod name;` are left out with everything below them.
        let mut names = root.reexports.clone();
        let mut test_paths: Vec<Vec<String>> = Vec::new();
        for (f, s) in files.iter().zip(&scans) {
            for m in &s.exported_macros {
                names.insert(m.clone(), f.module_path[0].clone());
            }
            for child in &s.test_children {
                let mut p = f.module_path.clone();
                p.push(child.clone());
                test_paths.push(p);
            }
        }
        let mut edges = BTreeMap::new();
        for (f, s) in files.iter().zip(&scans) {
            if test_paths.iter().any(|p| f.module_path.starts_with(p)) {
                continue;
            }
            let from = &f.module_path[0];
            for r in &s.refs {
                let to = if root.modules.contains(&r.name) {
                    &r.name
                } else if let Some(m) = names.get(&r.name) {
                    m
                } else {
                    continue; // an item of the crate root itself
                };
                if to != from {
                    edges
                        .entry((from.clone(), to.clone()))
                        .or_insert_with(|| format!("{}:{}", f.shown, r.line));
                }
            }
        }
        Graph {
            modules: root.modules,
            edges,
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.rs` file below `dir` (recursively), except `lib.rs` and `main.rs` at the top.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file relative to `src/` (`tail/tailer.rs` → `tail::tailer`,
/// `tail/mod.rs` → `tail`); `None` for the roots `lib.rs` and `main.rs`.
fn module_path_of(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return None;
    }
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    (!parts.is_empty()).then_some(parts)
}

/// What the crate root declares: its modules and the names it re-exports.
struct Root {
    modules: Vec<String>,
    /// A re-exported name → the top-level module it comes from.
    reexports: BTreeMap<String, String>,
}

/// Reads the `mod name;` and `pub use …;` items at the top of the crate root.
fn read_root(tokens: &[Token]) -> Root {
    let mut modules = Vec::new();
    let mut uses = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            Tok::Ident(k) if depth == 0 && k == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct(';'))) = (
                    tokens.get(i + 1).map(|t| &t.tok),
                    tokens.get(i + 2).map(|t| &t.tok),
                ) {
                    modules.push(name.clone());
                }
            }
            Tok::Ident(k) if depth == 0 && k == "use" && is_pub(tokens, i) => {
                // `pub use theta::Thing;`, `pub use crate::theta::Thing;` or `self::…`.
                let mut j = i + 1;
                if tokens.get(j).is_some_and(|t| t.tok == Tok::PathSep) {
                    j += 1;
                }
                let from_root =
                    |t: &Token| matches!(&t.tok, Tok::Ident(s) if s == "crate" || s == "self");
                if tokens.get(j).is_some_and(from_root)
                    && tokens.get(j + 1).is_some_and(|t| t.tok == Tok::PathSep)
                {
                    j += 2;
                }
                i = use_tree(tokens, j, None, &mut uses);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let reexports = uses
        .into_iter()
        .filter(|(first, bound)| modules.contains(first) && bound != "*")
        .map(|(first, bound)| (bound, first))
        .collect();
    Root { modules, reexports }
}

/// Whether the item whose keyword is at `i` is `pub` (any visibility).
fn is_pub(tokens: &[Token], i: usize) -> bool {
    visibility_start(tokens, i) < i
}

/// Where the visibility before the keyword at `i` starts (`i` when there is none).
fn visibility_start(tokens: &[Token], i: usize) -> usize {
    let is = |j: usize, want: &Tok| tokens.get(j).is_some_and(|t| t.tok == *want);
    let mut j = i;
    if j > 0 && is(j - 1, &Tok::Punct(')')) {
        let mut k = j - 1;
        while k > 0 && !is(k, &Tok::Punct('(')) {
            k -= 1;
        }
        if k > 0 && is(k - 1, &Tok::Ident("pub".into())) {
            j = k - 1;
        }
    } else if j > 0 && is(j - 1, &Tok::Ident("pub".into())) {
        j -= 1;
    }
    j
}

/// The outer attributes (`#[…]`) of the item whose keyword is at `i`, each as the tokens
/// between its brackets.
fn attributes(tokens: &[Token], i: usize) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut j = visibility_start(tokens, i);
    while j > 0 && tokens[j - 1].tok == Tok::Punct(']') {
        let close = j - 1;
        let mut depth = 0usize;
        let mut k = close;
        loop {
            match tokens[k].tok {
                Tok::Punct(']') => depth += 1,
                Tok::Punct('[') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            if k == 0 {
                return out;
            }
            k -= 1;
        }
        if k == 0 || tokens[k - 1].tok != Tok::Punct('#') {
            break;
        }
        out.push(&tokens[k + 1..close]);
        j = k - 1;
    }
    out
}

/// Whether an attribute is exactly `cfg(test)`.
fn is_cfg_test(attr: &[Token]) -> bool {
    let want = [
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
    ];
    attr.len() == want.len() && attr.iter().zip(&want).all(|(t, w)| t.tok == *w)
}

// --- reading one file -------------------------------------------------------------------------

/// A name at the crate root that a file refers to, and where.
#[derive(Debug, PartialEq)]
struct Ref {
    name: String,
    line: usize,
}

/// What one file says about the graph.
#[derive(Debug, Default)]
struct Scan {
    /// Every name at the crate root the file refers to (outside `#[cfg(test)]` modules).
    refs: Vec<Ref>,
    /// Child modules declared `#[cfg(test)] mod name;` (files of their own).
    test_children: Vec<String>,
    /// Macros the file exports at the crate root (`#[macro_export] macro_rules! name`).
    exported_macros: Vec<String>,
}

/// Reads the tokens of the file of module `module_path`.
fn scan(tokens: &[Token], module_path: &[String]) -> Scan {
    let mut out = Scan::default();
    // Inline modules entered: their names and the brace depth inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        // The module path where token `i` stands.
        let here = |inline: &[(String, usize)]| -> Vec<String> {
            let inner = inline.iter().map(|m| m.0.clone());
            module_path.iter().cloned().chain(inner).collect()
        };
        match &tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|m| m.1 == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(k) if k == "mod" => {
                let test = attributes(tokens, i).iter().any(|a| is_cfg_test(a));
                if let Some(Tok::Ident(name)) = tokens.get(i + 1).map(|t| &t.tok) {
                    match tokens.get(i + 2).map(|t| &t.tok) {
                        Some(Tok::Punct('{')) if test => {
                            i = matching_close(tokens, i + 2) + 1;
                            continue;
                        }
                        Some(Tok::Punct('{')) => {
                            depth += 1;
                            inline.push((name.clone(), depth));
                            i += 3;
                            continue;
                        }
                        Some(Tok::Punct(';')) if test => out.test_children.push(name.clone()),
                        _ => {}
                    }
                }
            }
            Tok::Ident(k) if k == "macro_rules" => {
                let exported = attributes(tokens, i)
                    .iter()
                    .any(|a| a.iter().any(|t| t.tok == Tok::Ident("macro_export".into())));
                if let (true, Some(Tok::Ident(name))) =
                    (exported, tokens.get(i + 2).map(|t| &t.tok))
                {
                    out.exported_macros.push(name.clone());
                }
            }
            Tok::Str(text) if is_whole_path(text) => {
                let inner = lex(text);
                let line = tokens[i].line;
                if let Some((names, _)) = root_names(&inner, 0, &here(&inline)) {
                    out.refs
                        .extend(names.into_iter().map(|name| Ref { name, line }));
                }
            }
            _ => {
                let after_sep = i > 0 && tokens[i - 1].tok == Tok::PathSep;
                if !after_sep && let Some((names, next)) = root_names(tokens, i, &here(&inline)) {
                    let line = tokens[i].line;
                    out.refs
                        .extend(names.into_iter().map(|name| Ref { name, line }));
                    i = next;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// If a path that reaches the crate root starts at `i` (`crate::`, `$crate::`, or enough
/// `super::`s to climb out of `here`), the names it takes there (one, or each of a group) and
/// the index after the root part. `None` for any other token, and for `super::` paths that stay
/// inside the top-level module.
fn root_names(tokens: &[Token], i: usize, here: &[String]) -> Option<(Vec<String>, usize)> {
    let ident = |j: usize, name: &str| {
        let is_name = |t: &Token| matches!(&t.tok, Tok::Ident(n) if n == name);
        tokens.get(j).is_some_and(is_name)
    };
    let sep = |j: usize| tokens.get(j).is_some_and(|t| t.tok == Tok::PathSep);
    let start = if ident(i, "crate") && sep(i + 1) {
        i + 2
    } else if ident(i, "super") && sep(i + 1) {
        let mut j = i;
        let mut ups = 0;
        while ident(j, "super") && sep(j + 1) {
            ups += 1;
            j += 2;
        }
        if ups < here.len() {
            return None; // still inside the top-level module
        }
        j
    } else {
        return None;
    };
    match tokens.get(start).map(|t| &t.tok) {
        Some(Tok::Ident(name)) => Some((vec![name.clone()], start + 1)),
        Some(Tok::Punct('{')) => {
            let mut uses = Vec::new();
            let next = use_tree(tokens, start, None, &mut uses);
            let names = uses
                .into_iter()
                .map(|(first, _)| first)
                .filter(|n| n != "self" && n != "*")
                .collect();
            Some((names, next))
        }
        _ => Some((Vec::new(), start)),
    }
}

/// Reads a use tree at `i` (`a::b`, `a::{b, c::d as e}`, `*`), pushing for each leaf the first
/// segment of its whole path (`first`, when inside a group) and the name it binds. Returns the
/// index after the tree.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    first: Option<&str>,
    out: &mut Vec<(String, String)>,
) -> usize {
    let tok = |j: usize| tokens.get(j).map(|t| &t.tok);
    match tok(i) {
        Some(Tok::Punct('{')) => {
            i += 1;
            loop {
                match tok(i) {
                    None => return i,
                    Some(Tok::Punct('}')) => return i + 1,
                    Some(Tok::Punct(',')) => i += 1,
                    _ => {
                        let next = use_tree(tokens, i, first, out);
                        i = if next == i { i + 1 } else { next };
                    }
                }
            }
        }
        Some(Tok::Punct('*')) => {
            out.push((first.unwrap_or("*").to_owned(), "*".to_owned()));
            i + 1
        }
        _ => {
            let mut segs: Vec<String> = Vec::new();
            while let Some(Tok::Ident(s)) = tok(i) {
                segs.push(s.clone());
                i += 1;
                if tok(i) != Some(&Tok::PathSep) {
                    break;
                }
                i += 1;
                if matches!(tok(i), Some(Tok::Punct('{' | '*'))) {
                    let head = first.or(segs.first().map(String::as_str));
                    let head = head.map(str::to_owned);
                    return use_tree(tokens, i, head.as_deref(), out);
                }
            }
            let Some(last) = segs.last() else {
                return i;
            };
            let mut bound = last.clone();
            if tok(i) == Some(&Tok::Ident("as".into()))
                && let Some(Tok::Ident(alias)) = tok(i + 1)
            {
                bound = alias.clone();
                i += 2;
            }
            let head = first.unwrap_or(&segs[0]).to_owned();
            out.push((head, bound));
            i
        }
    }
}

/// The index of the `}` that closes the `{` at `open`.
fn matching_close(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// Whether a string literal's text is a whole path from the crate root or a parent
/// (`crate::settings::default_true`), as serde's attributes name functions.
fn is_whole_path(text: &str) -> bool {
    let mut segs = text.split("::");
    matches!(segs.next(), Some("crate" | "super"))
        && text.contains("::")
        && segs.all(|s| {
            let mut c = s.chars();
            c.next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && c.all(|c| c == '_' || c.is_ascii_alphanumeric())
        })
}

// --- lexing -----------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier or keyword (`r#type` as `type`).
    Ident(String),
    /// The text of a string literal (of any kind), escapes left as they are.
    Str(String),
    /// `::`.
    PathSep,
    /// Any other single punctuation character.
    Punct(char),
    /// A number, a char literal or a lifetime.
    Other,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// The tokens of Rust source text, without comments (doc comments included).
fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let is_ident_start = |ch: char| ch == '_' || ch.is_alphabetic();
    let is_ident = |ch: char| ch == '_' || ch.is_alphanumeric();
    let ident_end = |mut i: usize| {
        while i < c.len() && is_ident(c[i]) {
            i += 1;
        }
        i
    };
    // The text of a string whose opening quote is at `open`, closed by a quote and `hashes`
    // `#`s (with escapes unless `raw`), and the index after it; counts the lines it spans.
    let string = |open: usize, hashes: usize, raw: bool, line: &mut usize| -> (Tok, usize) {
        let mut j = open + 1;
        while j < c.len() {
            match c[j] {
                '\\' if !raw => {
                    // An escape; a backslash at the end of a line continues the string.
                    if at(j + 1) == '\n' {
                        *line += 1;
                    }
                    j += 1;
                }
                '\n' => *line += 1,
                '"' if (1..=hashes).all(|h| at(j + h) == '#') => break,
                _ => {}
            }
            j += 1;
        }
        let text = c[open + 1..j.min(c.len())].iter().collect();
        (Tok::Str(text), j + 1 + hashes)
    };
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        // The token at `i`, if any, and where the next one may start.
        let (tok, next) = if ch == '\n' {
            line += 1;
            (None, i + 1)
        } else if ch.is_whitespace() {
            (None, i + 1)
        } else if ch == '/' && at(i + 1) == '/' {
            let end = c[i..]
                .iter()
                .position(|&x| x == '\n')
                .map_or(c.len(), |p| i + p);
            (None, end)
        } else if ch == '/' && at(i + 1) == '*' {
            // Block comments nest.
            let (mut j, mut depth) = (i, 0);
            while j < c.len() {
                if c[j] == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[j] == '\n' {
                        line += 1;
                    }
                    j += 1;
                }
            }
            (None, j)
        } else if ch == '"' {
            let (tok, end) = string(i, 0, false, &mut line);
            (Some(tok), end)
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime / label ('a, 'static).
            let end = if at(i + 1) == '\\' {
                let close = (i + 3..c.len()).find(|&j| c[j] == '\'').unwrap_or(c.len());
                close + 1
            } else if at(i + 2) == '\'' {
                i + 3
            } else {
                ident_end(i + 1)
            };
            (Some(Tok::Other), end)
        } else if is_ident_start(ch) {
            let j = ident_end(i);
            let word: String = c[i..j].iter().collect();
            let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if matches!(word.as_str(), "b" | "c") && at(j) == '"' {
                // A byte or C string.
                let (tok, end) = string(j, 0, false, &mut line);
                (Some(tok), end)
            } else if raw_prefix && at(j + hashes) == '"' {
                let (tok, end) = string(j + hashes, hashes, true, &mut line);
                (Some(tok), end)
            } else if word == "r" && hashes == 1 && is_ident_start(at(j + 1)) {
                // A raw identifier.
                let end = ident_end(j + 1);
                (Some(Tok::Ident(c[j + 1..end].iter().collect())), end)
            } else if word == "b" && at(j) == '\'' {
                // A byte char: lexed as a char literal next.
                (None, j)
            } else {
                (Some(Tok::Ident(word)), j)
            }
        } else if ch.is_ascii_digit() {
            (Some(Tok::Other), ident_end(i))
        } else if ch == ':' && at(i + 1) == ':' {
            (Some(Tok::PathSep), i + 2)
        } else {
            (Some(Tok::Punct(ch)), i + 1)
        };
        if let Some(tok) = tok {
            out.push(Token {
                tok,
                line: start_line,
            });
        }
        i = next;
    }
    out
}

// --- cycles -----------------------------------------------------------------------------------

/// Every elementary cycle of a directed graph (self-loops left out), each as its nodes from the
/// least one back to it (`[a, b, a]`), shortest first.
fn find_cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        if a != b {
            next.entry(a).or_default().push(b);
        }
    }
    let mut cycles = Vec::new();
    for &start in next.keys() {
        // Paths from `start` through nodes greater than it, so each cycle is found once.
        let mut path = vec![start];
        walk(start, &next, &mut path, &mut cycles);
    }
    cycles.sort_by(|a: &Vec<String>, b| a.len().cmp(&b.len()).then(a.cmp(b)));
    cycles
}

fn walk<'a>(
    start: &'a str,
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    cycles: &mut Vec<Vec<String>>,
) {
    let last = *path.last().expect("a path");
    for &n in next.get(last).into_iter().flatten() {
        if n == start {
            let mut cycle: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            cycle.push(start.to_owned());
            cycles.push(cycle);
        } else if n > start && !path.contains(&n) {
            path.push(n);
            walk(start, next, path, cycles);
            path.pop();
        }
    }
}

// --- the checker's own tests ------------------------------------------------------------------

fn edge_set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn the_cycle_finder_finds_every_cycle_and_none_where_there_is_none() {
    // A graph with no cycle: a diamond and a chain; a self-loop is not a cycle between modules.
    let dag = edge_set(&[
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
        ("d", "e"),
        ("e", "e"),
    ]);
    assert_eq!(find_cycles(&dag), Vec::<Vec<String>>::new());

    // The same with the chain closed back to the top, and a pair that refers both ways.
    let cyclic = edge_set(&[
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
        ("d", "a"),
        ("x", "y"),
        ("y", "x"),
    ]);
    let found: Vec<String> = find_cycles(&cyclic)
        .iter()
        .map(|c| c.join(" -> "))
        .collect();
    assert_eq!(
        found,
        ["x -> y -> x", "a -> b -> d -> a", "a -> c -> d -> a"],
        "{found:?}"
    );
}

/// The module names of the synthetic sources below.
fn synthetic_root() -> Root {
    read_root(&lex("//! The root.\n\
         pub mod alpha;\n\
         pub mod beta;\n\
         pub mod gamma;\n\
         mod delta;\n\
         pub mod epsilon;\n\
         pub mod zeta;\n\
         pub mod eta;\n\
         pub mod theta;\n\
         pub mod iota;\n\
         pub use theta::{Thing, other::Widget as Gadget};\n\
         fn root_helper() {}\n"))
}

#[test]
fn the_modules_and_re_exports_come_from_the_crate_root() {
    let root = synthetic_root();
    assert_eq!(
        root.modules,
        [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"
        ]
    );
    let reexports: Vec<(&str, &str)> = root
        .reexports
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(reexports, [("Gadget", "theta"), ("Thing", "theta")]);
    assert_eq!(
        module_path_of(Path::new("tail/tailer.rs")),
        Some(vec!["tail".to_owned(), "tailer".to_owned()])
    );
    assert_eq!(
        module_path_of(Path::new("sinks/discord/mod.rs")),
        Some(vec!["sinks".to_owned(), "discord".to_owned()])
    );
    assert_eq!(
        module_path_of(Path::new("config.rs")),
        Some(vec!["config".to_owned()])
    );
    assert_eq!(module_path_of(Path::new("lib.rs")), None);
    assert_eq!(module_path_of(Path::new("main.rs")), None);
}

#[test]
fn references_are_found_in_every_form_and_not_in_comments_strings_or_tests() {
    // The file `src/alpha/inner.rs` (module `alpha::inner`). Each line that refers to a module
    // says which in its name; the others must add nothing.
    let inner = r##"//! Doc comment: crate::beta::Nope and [`crate::gamma`].
use super::sibling::Thing; // inside alpha: no reference
use super::super::beta::One; // beta, climbing out
use crate::{gamma::{A, B}, delta, self as me}; // gamma, delta
/* A block comment: crate::epsilon /* nested: crate::epsilon */ crate::epsilon */
/// crate::epsilon in a doc comment
const TEXT: &str = "crate::epsilon is only text here";
const RAW: &str = r#"a "quoted" crate::epsilon"#;
const CH: char = '"'; const Q: char = '\''; fn f<'a>(x: &'a str) -> &'a str { x }
#[serde(default = "crate::zeta::default_true")] // zeta
pub(crate) fn g() { crate::traced_span!(parent: None, "x"); } // eta, by its macro
fn h() -> crate::Thing { crate::root_helper(); todo!() } // theta, by its re-export
mod nested { use super::super::super::Gadget; } // theta: out of alpha::inner::nested
#[cfg(test)]
mod tests {
    use crate::epsilon::Everything;
}
#[cfg(test)]
mod more_tests;
const LONG: &str = "a string continued \
    on the next line";
fn last() -> crate::iota::Last { todo!() } // iota: the line count held
"##;
    // The file `src/eta/mod.rs`, which exports the macro and refers to itself.
    let eta = "#[macro_export]\n\
               macro_rules! traced_span {\n\
               \x20   ($($t:tt)*) => { $crate::eta::span!($($t)*) };\n\
               }\n";
    // A test file declared by `inner`: left out.
    let more_tests = "use crate::epsilon::Everything;\n";
    let file = |shown: &str, path: &[&str], text: &str| SourceFile {
        shown: shown.to_owned(),
        module_path: path.iter().map(|s| s.to_string()).collect(),
        tokens: lex(text),
    };
    let files = [
        file("src/alpha/inner.rs", &["alpha", "inner"], inner),
        file(
            "src/alpha/inner/more_tests.rs",
            &["alpha", "inner", "more_tests"],
            more_tests,
        ),
        file("src/eta/mod.rs", &["eta"], eta),
    ];
    let graph = Graph::build(synthetic_root(), &files);
    let edges: Vec<String> = graph
        .edges
        .iter()
        .map(|((a, b), at)| format!("{a} -> {b} {at}"))
        .collect();
    assert_eq!(
        edges,
        [
            "alpha -> beta src/alpha/inner.rs:3",
            "alpha -> delta src/alpha/inner.rs:4",
            "alpha -> eta src/alpha/inner.rs:11",
            "alpha -> gamma src/alpha/inner.rs:4",
            "alpha -> iota src/alpha/inner.rs:22",
            "alpha -> theta src/alpha/inner.rs:12",
            "alpha -> zeta src/alpha/inner.rs:10",
        ],
        "{edges:#?}"
    );
    // The nested module's reference to theta is on line 13, after line 12's: first place only.
    let scan_inner = scan(&files[0].tokens, &files[0].module_path);
    assert!(
        scan_inner.refs.contains(&Ref {
            name: "Gadget".into(),
            line: 13
        }),
        "{:?}",
        scan_inner.refs
    );
    assert_eq!(scan_inner.test_children, ["more_tests"]);
}

#[test]
fn a_cycle_is_reported_with_the_first_place_of_each_edge() {
    let root = read_root(&lex("pub mod alpha;\npub mod beta;\npub mod gamma;\n"));
    let file = |shown: &str, path: &str, text: &str| SourceFile {
        shown: shown.to_owned(),
        module_path: vec![path.to_owned()],
        tokens: lex(text),
    };
    let files = [
        file(
            "src/alpha.rs",
            "alpha",
            "use crate::gamma::G;\nuse crate::beta::B;\nfn f() { crate::beta::g() }\n",
        ),
        file(
            "src/beta.rs",
            "beta",
            "#[serde(default = \"super::alpha::default\")]\nstruct S;\n",
        ),
        file("src/gamma.rs", "gamma", "pub struct G;\n"),
    ];
    let report = cycle_report(&Graph::build(root, &files)).expect("a cycle");
    assert!(
        report.contains(
            "in 1 cycle(s):\n\n  alpha -> beta -> alpha\n      \
             alpha -> beta  first at src/alpha.rs:2\n      \
             beta -> alpha  first at src/beta.rs:1\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("  alpha -> gamma  first at src/alpha.rs:1\n"),
        "{report}"
    );

    // Without beta's reference back, no cycle.
    let root = read_root(&lex("pub mod alpha;\npub mod beta;\npub mod gamma;\n"));
    let files = [
        file("src/alpha.rs", "alpha", "use crate::beta::B;\n"),
        file("src/beta.rs", "beta", "struct S;\n"),
    ];
    assert_eq!(cycle_report(&Graph::build(root, &files)), None);
}
