//! Patterns: the user-editable rules that turn records into typed events.
//!
//! Patterns live in TOML files (`patterns/*.toml`, format in `patterns/README.md`). [`load_dir`]
//! reads every `*.toml` file of a directory (not recursively; dot-files and editor backups are
//! skipped) and [`shipped`] loads the copies of the shipped files built into the binary, so
//! factorio-isr works with no patterns directory at all.
//!
//! Loading is all or nothing: either every file loads and the whole set compiles into a
//! [`PatternSet`], or the caller gets [`PatternErrors`] listing every problem with its file,
//! line, column and pattern name, and no set. A half-loaded set never exists, so a running
//! pipeline that fails to reload keeps its old set, and everything a failed load compiled is
//! freed when it returns.
//!
//! The regexes of one load together may take [`load::PATTERNS_SIZE_LIMIT_BYTES`] of memory
//! ([`compiled::SizeBudget`]): the first regex past it ends the load with an error at its file
//! and line, so pattern files cannot make `check`, `run` or a reload take more than that (plus
//! the set built from them).
//!
//! - [`spec`]: the file format as written, the serde shapes of `[[pattern]]` and
//!   `[pattern.discord]`, and the defaults of the keys that may be left out.
//! - [`load`]: TOML → validated [`Pattern`]s, step by step, with errors located in the file.
//! - [`compiled`]: the compiled regex of a pattern and the memory budget of a load.
//! - [`template`]: Discord templates split into text and placeholders, and colours.
//! - [`error`]: [`PatternError`] (what is wrong, at which file:line:column) and [`PatternErrors`].
//! - [`winner`]: which pattern wins a record: one anchored leftmost-first lazy-DFA search of
//!   every active pattern, in priority order.
//! - [`set`]: the compiled [`PatternSet`] and the match stage (record → [`crate::event::Event`]).
//! - [`wrapper`]: prefixes that server wrappers (Docker, Factorio Server Manager) put before
//!   Factorio's lines, taken off before matching.
//! - [`reload`]: hot reload of a patterns directory while `run` runs.
//! - [`internal_events`]: where a reload that succeeded or failed is logged and counted.

pub mod compiled;
pub mod error;
pub mod internal_events;
pub mod load;
pub mod reload;
pub mod set;
pub mod spec;
pub mod template;
pub mod winner;
pub mod wrapper;

use std::path::{Path, PathBuf};

pub use error::{Location, PatternError, PatternErrorKind, PatternErrors};
pub use load::{Capture, Pattern};
pub use set::{FileSummary, Match, PatternSet};
pub use spec::FieldType;
pub use template::{DiscordTemplate, TemplatePart};

/// The shipped pattern files, built into the binary: (file name, contents).
pub const SHIPPED_FILES: &[(&str, &str)] = &[
    ("console.toml", include_str!("../../patterns/console.toml")),
    ("engine.toml", include_str!("../../patterns/engine.toml")),
    ("mods.toml", include_str!("../../patterns/mods.toml")),
];

/// Loads the built-in copies of the shipped pattern files.
pub fn shipped() -> Result<PatternSet, PatternErrors> {
    load_sources(SHIPPED_FILES.iter().map(|(name, text)| {
        (
            PathBuf::from(format!("<built-in>/{name}")),
            Ok((*text).to_owned()),
        )
    }))
}

/// Loads every `*.toml` file of `dir`.
pub fn load_dir(dir: &Path) -> Result<PatternSet, PatternErrors> {
    let whole_dir_error = |kind| {
        PatternErrors(vec![PatternError {
            path: dir.to_owned(),
            line: 0,
            column: 0,
            pattern: None,
            kind,
        }])
    };
    let files = pattern_files(dir).map_err(|e| whole_dir_error(PatternErrorKind::Directory(e)))?;
    if files.is_empty() {
        return Err(whole_dir_error(PatternErrorKind::NoFiles));
    }
    load_sources(files.into_iter().map(|path| {
        let text = std::fs::read(&path)
            .map_err(PatternErrorKind::Read)
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| PatternErrorKind::NotUtf8));
        (path, text)
    }))
}

/// The pattern files of `dir`, sorted by name.
pub fn pattern_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        // Follow symlinks: a link to a file is a pattern file, a link to a directory is not.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn load_sources(
    sources: impl Iterator<Item = (PathBuf, Result<String, PatternErrorKind>)>,
) -> Result<PatternSet, PatternErrors> {
    let mut patterns = Vec::new();
    let mut errors = Vec::new();
    let mut files = Vec::new();
    let mut budget = compiled::SizeBudget::default();
    for (path, text) in sources {
        if budget.is_spent() {
            break;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("patterns")
            .to_owned();
        let text = match text {
            Ok(t) => t,
            Err(kind) => {
                errors.push(PatternError {
                    path,
                    line: 0,
                    column: 0,
                    pattern: None,
                    kind,
                });
                continue;
            }
        };
        let before = patterns.len();
        load::load_file_within(&path, &stem, &text, &mut budget, &mut patterns, &mut errors);
        let loaded = &patterns[before..];
        files.push(FileSummary {
            stem,
            patterns: loaded.len(),
            enabled: loaded.iter().filter(|p| p.enabled).count(),
        });
    }
    if !errors.is_empty() {
        return Err(PatternErrors(errors));
    }
    PatternSet::build(patterns, files).map_err(|e| PatternErrors(vec![e]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_patterns_load() {
        let set = shipped().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.files().len(), SHIPPED_FILES.len());
    }

    #[test]
    fn the_built_in_copies_are_the_files_in_patterns_dir() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns");
        let on_disk = pattern_files(&dir).unwrap();
        let names: Vec<_> = on_disk
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        let shipped: Vec<_> = SHIPPED_FILES.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(names, shipped, "add new pattern files to SHIPPED_FILES");
        load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn missing_and_empty_directories_are_errors_naming_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let err = load_dir(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(
            err.contains("nope: cannot read the patterns directory"),
            "{err}"
        );
        let err = load_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("no pattern files"), "{err}");
    }

    #[test]
    fn errors_from_several_files_are_all_reported_and_nothing_loads() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("a.toml"),
            "[[pattern]]\nname = \"x\"\nregex = '('\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("b.toml"), b"\xff\xfe").unwrap();
        std::fs::write(
            tmp.path().join("c.toml"),
            "[[pattern]]\nname = \"ok\"\nregex = 'ok'\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join(".hidden.toml"), "garbage").unwrap();
        std::fs::write(tmp.path().join("README.md"), "not toml").unwrap();
        let err = load_dir(tmp.path()).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("a.toml:3:9: pattern `x`: regex does not compile"),
            "{text}"
        );
        assert!(text.contains("b.toml: not UTF-8"), "{text}");
    }

    #[test]
    fn an_empty_file_is_a_file_with_no_patterns() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.toml"), "").unwrap();
        let set = load_dir(tmp.path()).unwrap();
        assert_eq!(set.files()[0].patterns, 0);
    }
}
