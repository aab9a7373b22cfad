//! The module map in docs/ARCHITECTURE.md and the layout list in lib.rs's documentation name
//! exactly the modules the code has: a folder per line, then every module in it. A module
//! missing from either list, or a name in either list that is not a module, fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Map = BTreeMap<String, BTreeSet<String>>;

/// Folder → its modules, from the source tree (`mod.rs` and unit-test `tests.rs` files are not
/// modules of their own; `x.rs` beside a folder `x/` is one module).
fn modules_on_disk(src: &Path) -> Map {
    let mut map = Map::new();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut children = BTreeSet::new();
            for child in std::fs::read_dir(&path).unwrap().flatten() {
                let p = child.path();
                let stem = p.file_stem().unwrap().to_string_lossy().to_string();
                let is_module = p.is_dir() || p.extension().is_some_and(|e| e == "rs");
                if is_module && stem != "mod" && stem != "tests" {
                    children.insert(stem);
                }
            }
            map.insert(name, children);
        } else if name != "lib" && name != "main" && path.extension().is_some_and(|e| e == "rs") {
            // A top-level file module: listed as a folder without modules, so the lists must
            // name it (and the layout asks for folders).
            map.insert(name, BTreeSet::new());
        }
    }
    map
}

/// Folder → its modules, from a list whose lines start with `prefix` and read
/// `` `folder/`: what it holds: `a`, `b` `` (the modules are the names after the last `: `).
fn modules_listed(text: &str, prefix: &str) -> Map {
    let ticked = |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_string).collect() };
    let mut map = Map::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(prefix) else { continue };
        let Some(folder) = ticked(rest).into_iter().next().and_then(|f| f.strip_suffix('/').map(str::to_string)) else {
            continue;
        };
        // After the folder: a description, then `: ` and the modules (or only the modules, or
        // only a description for a folder without modules).
        let after_head = rest.split_once(": ").map_or("", |(_, tail)| tail);
        let names = match after_head.rsplit_once(": ") {
            Some((_, list)) => list,
            None if after_head.split('`').step_by(2).all(|gap| gap.trim_matches([',', ' ']).is_empty()) => after_head,
            None => "",
        };
        let children: BTreeSet<String> = ticked(names).into_iter().collect();
        map.insert(folder, children);
    }
    map
}

/// What differs, as sentences (empty when the two agree).
fn differences(code: &Map, listed: &Map, list_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (folder, children) in code {
        match listed.get(folder) {
            None => out.push(format!("{list_name} does not list the folder `{folder}/`")),
            Some(l) => {
                for c in children.difference(l) {
                    out.push(format!("{list_name} does not list `{folder}::{c}`"));
                }
                for c in l.difference(children) {
                    out.push(format!("{list_name} lists `{folder}::{c}`, which does not exist"));
                }
            }
        }
    }
    for folder in listed.keys().filter(|f| !code.contains_key(*f)) {
        out.push(format!("{list_name} lists the folder `{folder}/`, which does not exist"));
    }
    out
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_architecture_map_names_every_module_and_no_other() {
    let code = modules_on_disk(&root().join("src"));
    assert!(code.len() > 10 && code.values().map(BTreeSet::len).sum::<usize>() > 40, "{code:?}");
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let map = doc.split("## Module map").nth(1).expect("ARCHITECTURE.md has a Module map section");
    let map = map.split("\n## ").next().unwrap();
    let diff = differences(&code, &modules_listed(map, "- "), "docs/ARCHITECTURE.md");
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn lib_rs_lists_every_module_and_no_other() {
    let code = modules_on_disk(&root().join("src"));
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let diff = differences(&code, &modules_listed(&lib, "//! - "), "src/lib.rs");
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[test]
fn a_missing_or_invented_module_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("alpha/deep")).unwrap();
    for f in ["lib.rs", "alpha/mod.rs", "alpha/one.rs", "alpha/tests.rs", "alpha/deep/mod.rs", "loose.rs"] {
        std::fs::write(src.join(f), "").unwrap();
    }
    let code = modules_on_disk(src);
    assert_eq!(code["alpha"], BTreeSet::from(["deep".to_string(), "one".to_string()]));
    let good = "- `alpha/`: a thing (`mod.rs`): `deep`, `one`\n- `loose/`: a file module\n";
    assert!(differences(&code, &modules_listed(good, "- "), "doc").is_empty());
    let bad = "- `alpha/`: a thing: `one`, `two`\n- `ghost/`: nothing: `x`\n";
    let diff = differences(&code, &modules_listed(bad, "- "), "doc");
    assert_eq!(
        diff,
        vec![
            "doc does not list `alpha::deep`",
            "doc lists `alpha::two`, which does not exist",
            "doc does not list the folder `loose/`",
            "doc lists the folder `ghost/`, which does not exist",
        ]
    );
}
