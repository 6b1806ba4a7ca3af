//! The C ABI tested from real C and C++ programs.
//!
//! Builds the C library (`cargo build -p expquant-capi`, into the same target directory and
//! profile directory as this test), compiles `tests/c/test_expquant.c` (C99),
//! `tests/cpp/test_expquant.cpp` (C++17) and `examples/c/minimal.c` with the system
//! compilers (`cc` and `c++`, or `$CC` and `$CXX`) against `include/expquant.h`, links each
//! once against `libexpquant.so` (with an rpath) and once against `libexpquant.a`, runs them
//! and asserts that they succeed. A missing compiler or `nm` is a failure, not a skip.
//!
//! The binaries land in `<target>/<profile>/c-abi/`; CI runs
//! `target/debug/c-abi/test_expquant_c-shared` under valgrind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Where the library and the test programs go: `<target>/<profile>`, the directory whose
/// `deps/` holds this test binary, so a plain `cargo test` and `cargo test --release` each
/// use their own, and `CARGO_TARGET_DIR` or `--target-dir` are honoured.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let deps = exe
        .parent()
        .expect("test binary is in <target>/<profile>/deps");
    deps.parent()
        .expect("deps is in <target>/<profile>")
        .to_path_buf()
}

/// Builds `expquant-capi` once per test process and returns the directory holding
/// `libexpquant.so` and `libexpquant.a`.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .arg("build")
            .arg("--manifest-path")
            .arg(Path::new(ROOT).join("Cargo.toml"))
            .args(["-p", "expquant-capi", "--target-dir"])
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
            None => panic!("unexpected target layout: {}", profile_dir.display()),
        }
        run(
            &mut build,
            "building the C library (cargo build -p expquant-capi)",
        );
        for lib in ["libexpquant.so", "libexpquant.a"] {
            assert!(
                profile_dir.join(lib).is_file(),
                "cargo build -p expquant-capi did not produce {}",
                profile_dir.join(lib).display()
            );
        }
        // A program linked with `-lexpquant` records the library's SONAME,
        // `libexpquant.so.0`, and looks for that name at run time; an install provides it
        // as a symlink, and so does this build directory.
        let soname = profile_dir.join("libexpquant.so.0");
        let _ = std::fs::remove_file(&soname);
        std::os::unix::fs::symlink("libexpquant.so", &soname)
            .unwrap_or_else(|e| panic!("linking {}: {e}", soname.display()));
        profile_dir
    })
}

/// Runs a command to success, or panics with its output.
fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "{what}: could not start `{}`: {e}. Install it (gcc/g++, binutils) or set CC/CXX.",
            command.get_program().to_string_lossy()
        )
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{command:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[derive(Clone, Copy)]
enum Lang {
    C,
    Cxx,
}

#[derive(Clone, Copy, PartialEq)]
enum Link {
    Shared,
    Static,
}

/// Compiles `source` with warnings as errors against `include/`, links it as `link` says,
/// runs it and returns its stdout.
fn build_and_run(source: &str, lang: Lang, link: Link, extra_flags: &[&str]) -> String {
    let lib = library_dir();
    let out_dir = lib.join("c-abi");
    std::fs::create_dir_all(&out_dir).unwrap();
    let stem = Path::new(source).file_stem().unwrap().to_string_lossy();
    let suffix = match lang {
        Lang::C => "c",
        Lang::Cxx => "cpp",
    };
    let mut name = format!(
        "{stem}_{suffix}-{}",
        if link == Link::Shared {
            "shared"
        } else {
            "static"
        }
    );
    if !extra_flags.is_empty() {
        name.push_str("-sanitized");
    }
    let exe = out_dir.join(name);

    let (compiler, std_flag) = match lang {
        Lang::C => (
            std::env::var("CC").unwrap_or_else(|_| "cc".into()),
            "-std=c99",
        ),
        Lang::Cxx => (
            std::env::var("CXX").unwrap_or_else(|_| "c++".into()),
            "-std=c++17",
        ),
    };
    let mut cc = Command::new(&compiler);
    cc.args([std_flag, "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .args(extra_flags)
        .arg("-I")
        .arg(Path::new(ROOT).join("include"))
        .arg(Path::new(ROOT).join(source))
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            cc.arg(format!("-L{}", lib.display()))
                .arg("-lexpquant")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            // What `rustc --print native-static-libs` asks for on Linux/glibc (the
            // remaining ones it lists come with the C runtime).
            cc.arg(lib.join("libexpquant.a"))
                .args(["-lpthread", "-ldl", "-lm"]);
        }
    }
    cc.args(["-lm", "-pthread"]);
    run(&mut cc, &format!("compiling {source} with {compiler}"));
    run(
        &mut Command::new(&exe),
        &format!("running {}", exe.display()),
    )
}

#[test]
fn c_test_shared() {
    let out = build_and_run("tests/c/test_expquant.c", Lang::C, Link::Shared, &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_test_static() {
    let out = build_and_run("tests/c/test_expquant.c", Lang::C, Link::Static, &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

/// The C test under AddressSanitizer and UndefinedBehaviorSanitizer (leaks are left to the
/// valgrind run in CI).
#[test]
fn c_test_static_sanitized() {
    let flags = [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
    ];
    let out = build_and_run("tests/c/test_expquant.c", Lang::C, Link::Static, &flags);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_compensate_test_shared_and_static() {
    for link in [Link::Shared, Link::Static] {
        let out = build_and_run("tests/c/test_compensate.c", Lang::C, link, &[]);
        assert!(out.contains("all checks passed"), "{out}");
    }
}

#[test]
fn cpp_test_shared() {
    let out = build_and_run("tests/cpp/test_expquant.cpp", Lang::Cxx, Link::Shared, &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn cpp_test_static() {
    let out = build_and_run("tests/cpp/test_expquant.cpp", Lang::Cxx, Link::Static, &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_container_test_static() {
    let out = build_and_run("tests/c/test_container.c", Lang::C, Link::Static, &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

/// The container test under AddressSanitizer and UndefinedBehaviorSanitizer.
#[test]
fn c_container_test_sanitized() {
    let flags = [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
    ];
    let out = build_and_run("tests/c/test_container.c", Lang::C, Link::Static, &flags);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn cpp_container_test_shared() {
    let out = build_and_run("tests/cpp/test_container.cpp", Lang::Cxx, Link::Shared, &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

/// The container `tests/c/test_container.c` builds through the C API equals, byte for byte,
/// the one `write_container` writes for the same entries (this is also the shared-library run
/// of that test, which valgrind repeats in CI).
#[test]
fn c_written_container_equals_the_rust_one() {
    use expquant::{quantize, write_container, Config, Entry};
    let out = build_and_run("tests/c/test_container.c", Lang::C, Link::Shared, &[]);
    assert!(out.contains("all checks passed"), "{out}");
    let written = library_dir()
        .join("c-abi")
        .join("test_container_c-shared.container");
    let from_c =
        std::fs::read(&written).unwrap_or_else(|e| panic!("reading {}: {e}", written.display()));
    // The entries of `build` in tests/c/test_container.c.
    let (rows, cols, bias_len) = (6, 40, 6);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0)
        .collect();
    let bias: Vec<f32> = (0..bias_len).map(|i| i as f32 * 0.25 - 0.5).collect();
    let weight = quantize(&w, rows, cols, &Config::exponential(4)).unwrap();
    let from_rust = write_container(&[
        ("fc.weight", Entry::from(&weight)),
        ("fc.bias", Entry::vector(&bias)),
    ])
    .unwrap();
    assert_eq!(from_c.len(), from_rust.len());
    assert!(from_c == from_rust, "the C and Rust containers differ");
}

/// The README's program (docs/c_usage.md), so that it cannot rot.
#[test]
fn minimal_example_shared_and_static() {
    for link in [Link::Shared, Link::Static] {
        let out = build_and_run("examples/c/minimal.c", Lang::C, link, &[]);
        assert!(out.contains("bits per weight, y = ["), "{out}");
    }
}

/// Every function the header declares is exported by the shared library and defined in the
/// static one, and the shared library exports no other `expq_` symbol.
#[test]
fn header_matches_exported_symbols() {
    let header = header();
    let mut declared: Vec<String> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && l.contains("expq_"))
        .filter_map(|l| {
            let before_paren = l.split('(').next()?;
            if !l.contains('(') {
                return None;
            }
            let name = before_paren.rsplit([' ', '*']).next()?;
            name.starts_with("expq_").then(|| name.to_owned())
        })
        .collect();
    declared.sort();
    assert!(
        declared.len() >= 17,
        "parsed only {declared:?} from the header"
    );

    let lib = library_dir();
    let symbols = |args: &[&str], file: &str| -> Vec<String> {
        let out = run(
            Command::new("nm").args(args).arg(lib.join(file)),
            &format!("nm {file}"),
        );
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace().rev();
                let name = parts.next()?;
                let kind = parts.next()?;
                (kind == "T" && name.starts_with("expq_")).then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(
        symbols(&["-D", "--defined-only"], "libexpquant.so"),
        declared,
        "libexpquant.so exports"
    );
    assert_eq!(
        symbols(&["--defined-only"], "libexpquant.a"),
        declared,
        "libexpquant.a defines"
    );
}

/// The usage docs show `examples/c/minimal.c` verbatim (in `docs/c_usage.md`, and in the
/// README once its "Use from C/C++" section is there), so the program shown is the program
/// tested.
#[test]
fn docs_show_the_tested_minimal_program() {
    let program = std::fs::read_to_string(Path::new(ROOT).join("examples/c/minimal.c")).unwrap();
    let fenced = format!("```c\n{program}```");
    let usage = std::fs::read_to_string(Path::new(ROOT).join("docs/c_usage.md")).unwrap();
    assert!(
        usage.contains(&fenced),
        "docs/c_usage.md does not show examples/c/minimal.c verbatim"
    );
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    if readme.contains("## Use from C/C++") {
        assert!(
            readme.contains(&fenced),
            "README.md does not show examples/c/minimal.c verbatim"
        );
    }
}

/// The committed header, as C compilers see it.
fn header() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("include/expquant.h")).unwrap()
}

/// The header's text outside comments, one entry per line.
fn header_code() -> Vec<String> {
    let mut code = Vec::new();
    let mut in_block = false;
    for line in header().lines() {
        let mut kept = String::new();
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else if let Some(start) = rest.find("/*") {
                kept.push_str(&rest[..start]);
                rest = &rest[start + 2..];
                in_block = true;
            } else {
                kept.push_str(rest.split("//").next().unwrap());
                break;
            }
        }
        code.push(kept);
    }
    code
}

/// Every macro, type, enum constant and function the header defines is `EXPQ_`/`expq_`
/// prefixed (the include guard is `EXPQUANT_H`), so that it cannot collide with a C
/// program's own names.
#[test]
fn header_defines_only_prefixed_names() {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut defined: Vec<(String, &str)> = Vec::new();
    let mut in_enum = false;
    for line in header_code() {
        let trimmed = line.trim();
        let words: Vec<&str> = trimmed
            .split(|c: char| !is_ident(c))
            .filter(|w| !w.is_empty())
            .collect();
        if trimmed.starts_with("#if") || trimmed.starts_with("#endif") {
            // Conditions define nothing (`#if !defined(EXPQ_NO_STD)`, the include guard).
        } else if let Some(rest) = trimmed.strip_prefix("#define") {
            let name: String = rest.trim().chars().take_while(|&c| is_ident(c)).collect();
            if name != "EXPQUANT_H" {
                defined.push((name, "macro"));
            }
        } else if trimmed.starts_with("typedef enum") {
            in_enum = true;
            defined.push((words[2].to_owned(), "enum"));
        } else if trimmed.starts_with("typedef struct") {
            defined.push((words[2].to_owned(), "struct"));
            if trimmed.ends_with(';') {
                defined.push((words[3].to_owned(), "typedef"));
            }
        } else if trimmed.starts_with('}') && trimmed.ends_with(';') && words.len() == 1 {
            in_enum = false;
            defined.push((words[0].to_owned(), "typedef"));
        } else if in_enum && trimmed.contains('=') {
            defined.push((words[0].to_owned(), "enum constant"));
        } else if !line.starts_with(' ') && line.contains('(') {
            let before = line.split('(').next().unwrap();
            let name = before.rsplit([' ', '*']).next().unwrap();
            defined.push((name.to_owned(), "function"));
        }
    }
    let count = |kind: &str| defined.iter().filter(|(_, k)| *k == kind).count();
    assert!(
        count("macro") >= 8 && count("enum") >= 4 && count("function") >= 30,
        "the header was not parsed as expected: {defined:?}"
    );
    let leaks: Vec<&(String, &str)> = defined
        .iter()
        .filter(|(name, _)| !name.starts_with("expq_") && !name.starts_with("EXPQ_"))
        .collect();
    assert!(
        leaks.is_empty(),
        "unprefixed names in the header: {leaks:?}"
    );
}

/// The doc comments cbindgen copies into the header read as plain prose: no rustdoc link
/// syntax (`[text](target)`, `` [`name`] ``).
#[test]
fn header_comments_have_no_rustdoc_links() {
    let header = header();
    let leaks: Vec<(usize, &str)> = header
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains("](") || line.contains("[`") || line.contains("]["))
        .map(|(i, line)| (i + 1, line.trim()))
        .collect();
    assert!(
        leaks.is_empty(),
        "rustdoc links in include/expquant.h: {leaks:?}"
    );
}

/// `EXPQ_VERSION_MAJOR/MINOR/PATCH` are this crate's version (the C test checks them against
/// `expq_version()` at run time, and at compile time that they are integer constants).
#[test]
fn header_version_macros_are_the_crate_version() {
    let header = header();
    let value = |name: &str| -> String {
        let prefix = format!("#define {name} ");
        header
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("include/expquant.h does not define {name}"))
            .trim()
            .to_owned()
    };
    assert_eq!(
        [
            value("EXPQ_VERSION_MAJOR"),
            value("EXPQ_VERSION_MINOR"),
            value("EXPQ_VERSION_PATCH"),
        ],
        [
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            env!("CARGO_PKG_VERSION_PATCH"),
        ]
    );
}
