//! The library's layering, checked: every `crate::` import of a module points to a module on a
//! strictly lower layer. docs/architecture.md shows the same table as a map. A new module must
//! be added here (and there) on purpose; an import that would point up or sideways fails with
//! the file and the two modules named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/` and their layer (higher imports lower, never the reverse).
const LAYERS: &[(&str, u8)] = &[
    ("entry", 10),
    ("stages", 9),
    ("tools", 9),
    ("planning", 8),
    ("lease", 8),
    ("inject", 7),
    ("error", 7),
    ("job_user", 6),
    ("resolution", 6),
    ("executor", 6),
    ("config", 5),
    ("bindings", 4),
    ("supervision", 4),
    ("docker", 4),
    ("mask", 3),
    ("policy", 3),
    ("identity", 3),
    ("secret_plan", 2),
    ("job_response", 2),
    ("config_file", 2),
    ("state", 2),
    ("protocol", 1),
    ("declarations", 1),
    ("vault", 1),
    ("api_path", 0),
    ("events", 0),
    ("shell_quote", 0),
    ("private_fs", 0),
    ("exit", 0),
    ("patterns", 0),
    ("joblog", 0),
    ("cli", 0),
    ("random", 0),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None`: the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The code of a file without comments and without its unit tests (test helpers may reach
/// anywhere).
fn code(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let mut kept = String::new();
    let mut depth_in_tests: Option<i64> = None;
    let mut after_cfg_test = false;
    for line in lines {
        if let Some(depth) = depth_in_tests.as_mut() {
            *depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if *depth <= 0 {
                depth_in_tests = None;
            }
            continue;
        }
        if after_cfg_test && line.trim_start().starts_with("mod ") && line.contains('{') {
            let depth = line.matches('{').count() as i64 - line.matches('}').count() as i64;
            depth_in_tests = (depth > 0).then_some(depth);
            after_cfg_test = false;
            continue;
        }
        after_cfg_test = line.trim() == "#[cfg(test)]";
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

fn imported_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Test-only files (`tests.rs`, `test_issuer.rs`) are compiled only for unit tests.
        if name == "tests.rs" || name.starts_with("test_") {
            continue;
        }
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(&own) = layers.get(module.as_str()) else {
            problems.push(format!(
                "module {module} ({}) is not in the layer table of tests/it/architecture.rs; add it there and to docs/architecture.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for target in imported_modules(&code(&text)) {
            if target == module {
                continue;
            }
            match layers.get(target.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(&theirs) => problems.push(format!(
                    "{}: {module} (layer {own}) imports {target} (layer {theirs}); imports must point to a lower layer",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => problems.push(format!(
                    "{}: imports crate::{target}, which is not in the layer table",
                    file.display()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let code = code(
        "use crate::exit::Outcome;\n// crate::stages in a comment\n#[cfg(test)]\nmod tests {\n    use crate::planning;\n}\nfn f() { crate::stages::x(); }\n",
    );
    assert_eq!(imported_modules(&code), ["exit", "stages"]);
}
