//! The Prometheus tools some tests run (`promtool`, `prometheus`: the Debian package
//! `prometheus`; `prometheus-alertmanager`, `amtool`: the Debian package
//! `prometheus-alertmanager`), and the programs the benchmark harness's tests run (`python3`,
//! `/usr/bin/time`: the Debian packages `python3` and `time`). On a machine without them those
//! tests are skipped with a note written straight to the terminal (past the test harness's
//! capture, so it is seen); with
//! `FACTORIO_ISR_REQUIRE_PROMTOOL=1` (set by `.ci/run`) a missing tool fails them instead.
//!
//! The same holds for the Python packages some tests run ([`python_module`]: the beats
//! receiver `timbersnake` from PyPI).

use std::io::Write;
use std::process::{Command, Stdio};

/// The environment variable that makes the Prometheus tools required.
pub const REQUIRE_ENV: &str = "FACTORIO_ISR_REQUIRE_PROMTOOL";

/// `name` when it is installed; `None` (after a loud note) when it is not and not required.
/// Fails the test when it is missing and required.
pub fn tool(name: &'static str) -> Option<&'static str> {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match decide(name, found, std::env::var(REQUIRE_ENV).ok().as_deref()) {
        Ok(true) => Some(name),
        Ok(false) => None,
        Err(why) => panic!("{why}"),
    }
}

/// Whether to run (`Ok(true)`), skip with a note (`Ok(false)`), or fail (`Err`), given whether
/// `name` was found and the value of [`REQUIRE_ENV`].
pub fn decide(name: &str, found: bool, require: Option<&str>) -> Result<bool, String> {
    if found {
        return Ok(true);
    }
    let package = package_of(name);
    if require.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        return Err(format!(
            "`{name}` is not installed and {REQUIRE_ENV}=1 requires it: install the Debian \
             package `{package}` (apt-get install -y {package})"
        ));
    }
    // Straight to the terminal: `eprintln!` is captured and hidden for passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: `{name}` is not installed, so this test checked nothing. Install the \
         Debian package `{package}` to run it; {REQUIRE_ENV}=1 makes it required. ***\n"
    );
    Ok(false)
}

/// The Debian package that installs the tool `name`.
pub fn package_of(name: &str) -> &'static str {
    match name {
        "prometheus-alertmanager" | "amtool" => "prometheus-alertmanager",
        "python3" => "python3",
        "/usr/bin/time" => "time",
        _ => "prometheus",
    }
}

/// `python3` when it can import `module` (from the PyPI package `pip_spec`); `None` (after a
/// loud note) when it cannot and [`REQUIRE_ENV`] does not require it. Fails the test when it
/// cannot and is required.
// Test crates that include this file alone (by `#[path]`) do not use it.
#[allow(dead_code)]
pub fn python_module(module: &str, pip_spec: &str) -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("python3");
    }
    let install = format!("python3 -m pip install {pip_spec}");
    let require = std::env::var(REQUIRE_ENV).ok();
    if require.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        panic!(
            "the Python module `{module}` is not installed and {REQUIRE_ENV}=1 requires it: {install}"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: the Python module `{module}` is not installed, so this test checked nothing. Run `{install}` to run it; {REQUIRE_ENV}=1 makes it required. ***\n"
    );
    None
}
