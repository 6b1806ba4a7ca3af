//! No top-level module of the crate depends on a module that depends back on it.
//!
//! Reads every `.rs` file under `src/`, attributes it to its top-level module (`src/x.rs` and
//! `src/x/**` are module `x`; `src/lib.rs` is the root and is left out, since it re-exports
//! everything), and collects every `crate::<name>` path in it — `use` lines, paths in code
//! and intra-doc links alike, since a doc link is a dependency of the docs. A path through a
//! root re-export (`crate::QuantizedView`) counts as a dependency on the module that defines
//! the item, found from the `pub use module::...` lines of `lib.rs`. Then any cycle in that
//! graph fails the test, printed as `a -> b -> a`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers that follow `crate::` in `text`, and for `crate::{a, b::c}` each of
/// `a` and `b`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` in macros is the same crate; any other prefix (`expquant_crate::`) is not.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| is_ident(c) && c != '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|&c| is_ident(c)).collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Root item name → defining top-level module, from `pub use module::{...}` / `pub use
/// module::Item` lines of `lib.rs` (rustfmt keeps each on one line or one brace group).
fn root_items(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    let flat = lib.replace('\n', " ");
    for statement in flat.split(';') {
        let Some(path) = statement.trim().split("pub use ").nth(1) else {
            continue;
        };
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        let module = module.trim().trim_start_matches("crate::").to_string();
        let rest = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for item in rest.split(',') {
            let last = item.trim().rsplit("::").next().unwrap_or("").trim();
            let name = last.rsplit(" as ").next().unwrap_or(last).trim();
            if !name.is_empty() {
                items.insert(name.to_string(), module.clone());
            }
        }
    }
    items
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// Every cycle, found one at a time by removing an edge of each found cycle.
fn all_cycles(mut graph: BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    while let Some(cycle) = find_cycle(&graph) {
        graph
            .get_mut(&cycle[0])
            .expect("cycle starts at a node")
            .remove(&cycle[1]);
        cycles.push(cycle);
    }
    cycles
}

fn dependency_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let roots = root_items(&lib);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("non-empty path");
        let name = first.as_os_str().to_string_lossy();
        modules.insert(name.trim_end_matches(".rs").to_string());
    }
    modules.remove("lib");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("under src");
        let name = rel.components().next().expect("non-empty path");
        let module = name
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" {
            continue;
        }
        let text = fs::read_to_string(file).expect("readable source file");
        let deps = graph.entry(module.clone()).or_default();
        for name in crate_paths(&text) {
            let target = if modules.contains(&name) {
                Some(name)
            } else {
                roots.get(&name).cloned()
            };
            if let Some(target) = target.filter(|t| *t != module) {
                deps.insert(target);
            }
        }
    }
    graph
}

#[test]
fn the_reader_sees_the_paths_it_must() {
    assert_eq!(
        crate_paths(
            "use crate::a::B; x = crate::c(); $crate::d; use crate::{e, f::G}; my_crate::h"
        ),
        ["a", "c", "d", "e", "f"]
    );
    let roots =
        root_items("pub use view::QuantizedView;\npub use scheme::{\n    Params, Scheme,\n};");
    assert_eq!(roots.get("QuantizedView").map(String::as_str), Some("view"));
    assert_eq!(roots.get("Scheme").map(String::as_str), Some("scheme"));
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(all_cycles(graph), [["a", "b", "c", "a"]]);
}

#[test]
fn no_module_depends_on_a_module_that_depends_back_on_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = dependency_graph(&src);
    assert!(graph.contains_key("format") && graph.contains_key("view"));
    let cycles = all_cycles(graph);
    let printed: Vec<String> = cycles.iter().map(|c| c.join(" -> ")).collect();
    assert!(
        cycles.is_empty(),
        "module cycles:\n  {}",
        printed.join("\n  ")
    );
}
