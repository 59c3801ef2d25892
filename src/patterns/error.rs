//! The errors of loading pattern files: what is wrong, and where.
//!
//! A [`PatternError`] is one problem with its file, line and column (both 1-based; 0 when the
//! problem concerns a whole file or directory) and the pattern's name when it is in one
//! pattern; its [`PatternErrorKind`] says what is wrong and what to do about it.
//! [`PatternErrors`] is every problem of one load, shown under a count with one problem per
//! line, each starting with `file:line:column:`, so a user fixes every file in one round.
//!
//! The message texts are part of the interface: `factorio-isr check` prints them, and the
//! pattern-file documentation and tests quote them.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::load::{MAX_NAME_CHARS, MAX_REGEX_BYTES, REGEX_SIZE_LIMIT_BYTES};

/// Where something is in a pattern file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// What was wrong with a pattern file.
#[derive(Debug, Error)]
pub enum PatternErrorKind {
    /// The patterns directory is missing or unreadable.
    #[error("cannot read the patterns directory: {0}")]
    Directory(io::Error),
    /// The directory holds no pattern files.
    #[error("no pattern files (*.toml) in this directory; copy the shipped `patterns/` here")]
    NoFiles,
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The file is not UTF-8.
    #[error("not UTF-8 text; save pattern files as UTF-8")]
    NotUtf8,
    /// TOML syntax error, unknown key, or a value of the wrong type.
    #[error("{0}")]
    Toml(String),
    /// A name or event type that is empty, longer than [`MAX_NAME_CHARS`], or has characters
    /// outside `[A-Za-z0-9_-]`.
    #[error("invalid {what} `{value}`: use 1 to {MAX_NAME_CHARS} letters, digits, `_` and `-`")]
    InvalidName {
        /// `name` or `event_type`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A `mention_roles` entry that is not a Discord role id.
    #[error(
        "`{0}` in mention_roles is not a Discord role id: use the role's 17 to 20 digit id (Server Settings > Roles > Copy Role ID, with Developer Mode on), as a string"
    )]
    RoleId(String),
    /// Two patterns in one file share a name.
    #[error("duplicate pattern name; it is first defined on line {first_line}: rename one of them")]
    Duplicate {
        /// Line of the first definition.
        first_line: usize,
    },
    /// The regex is longer than [`MAX_REGEX_BYTES`].
    #[error("regex is {len} bytes long, over the limit of {MAX_REGEX_BYTES}: split the pattern")]
    RegexTooLong {
        /// Its length.
        len: usize,
    },
    /// The regex does not compile.
    #[error("regex does not compile:\n{0}")]
    RegexSyntax(String),
    /// The compiled regex is too large.
    #[error(
        "regex compiles to more than {REGEX_SIZE_LIMIT_BYTES} bytes: reduce counted repetitions like `{{1000}}` or split it"
    )]
    RegexTooBig,
    /// The regex matches the empty string, so it would match every record.
    #[error(
        "regex matches the empty string, so it would match every line: anchor it to fixed text such as `\\[JOIN\\]`"
    )]
    MatchesEmpty,
    /// A `fields` entry names something that is not a capture.
    #[error("field `{0}` is given a type, but the regex has no capture `(?P<{0}>…)`")]
    FieldNotCaptured(String),
    /// A template placeholder names something that is not a capture.
    #[error(
        "discord template uses `{{{name}}}`, but the regex has no such capture (it has: {available})"
    )]
    TemplateField {
        /// The placeholder.
        name: String,
        /// What it could have used.
        available: String,
    },
    /// A template has an unmatched brace.
    #[error(
        "discord template has an unmatched `{{` or `}}`; write `{{{{` or `}}}}` for a literal brace"
    )]
    TemplateSyntax,
    /// The colour is out of range.
    #[error("color must be a number from 0x000000 to 0xFFFFFF or a string \"#rrggbb\"")]
    Color,
    /// The regexes loaded so far and this one together compile to more than the limit for all
    /// patterns ([`super::load::PATTERNS_SIZE_LIMIT_BYTES`]); nothing after it was checked.
    #[error(
        "with this regex the pattern files compile to more than {} (the limit for all patterns together; the patterns before it take {}), so loading stopped here and later patterns were not checked: remove patterns you do not use, or make large regexes smaller (`\\w` and `\\d` match the letters and digits of every language and cost the most, above all repeated as in `\\w{{20}}`; `[A-Za-z0-9_]` and `[0-9]` cost a fraction)",
        mib(*.limit_bytes),
        mib(*.used_bytes)
    )]
    PatternsTooBig {
        /// What the patterns before it take, in bytes.
        used_bytes: usize,
        /// The limit, in bytes.
        limit_bytes: usize,
    },
    /// The enabled patterns do not fit in one regex set.
    #[error(
        "the enabled patterns together are too large to compile into one set ({0}); disable or simplify some"
    )]
    SetTooBig(String),
}

/// `bytes` in MiB, with one decimal when it is not whole.
fn mib(bytes: usize) -> String {
    let tenths = (bytes as u128 * 10 + 512 * 1024) / (1024 * 1024);
    if tenths.is_multiple_of(10) {
        format!("{} MiB", tenths / 10)
    } else {
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    }
}

/// A problem in a pattern file, with where it is.
#[derive(Debug, Error)]
pub struct PatternError {
    /// The file (and line and column when known).
    pub path: PathBuf,
    /// 1-based line, 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// The pattern's name, when the problem is in one pattern.
    pub pattern: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: PatternErrorKind,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        f.write_str(": ")?;
        if let Some(p) = &self.pattern {
            write!(f, "pattern `{p}`: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// Every problem found while loading pattern files.
#[derive(Debug, Error)]
pub struct PatternErrors(pub Vec<PatternError>);

impl fmt::Display for PatternErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the pattern files:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {e}")?;
        }
        Ok(())
    }
}
