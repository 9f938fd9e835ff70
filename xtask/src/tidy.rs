//! `cargo xtask tidy`: the structure rules the code keeps, checked on the source itself.
//!
//! - A module (one `.rs` file under `crates/*/src` or `xtask/src`) holds at most
//!   [`MAX_MODULE_LINES`] lines of code outside `#[cfg(test)]` items and test-only files.
//! - A function is at most [`MAX_FN_LINES`] lines long, from `fn` to its closing brace.
//! - No module imports a module that imports it back, directly or around a longer
//!   loop: `use`, `crate::`, `super::`, `self::` and module-relative (`child::Item`)
//!   paths between the modules of one crate, macro arguments included, form no cycle. A parent that declares a child and reads or re-exports its
//!   items is the child's facade, so an edge from a child to one of its ancestors does
//!   not count; an item re-exported by the crate root counts as its defining module's.
//!
//! The files are parsed with `syn`, so strings, comments and macros cannot fool the count.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// The most lines of non-test code in one module.
pub const MAX_MODULE_LINES: usize = 600;
/// The most lines in one function.
pub const MAX_FN_LINES: usize = 70;

/// Checks every crate of the workspace; the error lists every broken rule.
pub fn check(root: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut modules = 0;
    for krate in crate_roots(root)? {
        let found = scan_crate(&krate)?;
        modules += found.modules.len();
        problems.extend(found.problems(root));
    }
    if problems.is_empty() {
        println!(
            "tidy: {modules} modules, none over {MAX_MODULE_LINES} lines, no function over \
             {MAX_FN_LINES} lines, no import cycle"
        );
        Ok(())
    } else {
        let mut text = format!("{} structure rule(s) broken:\n", problems.len());
        for p in &problems {
            let _ = writeln!(text, "  {p}");
        }
        Err(text)
    }
}

/// A crate's root files: `src/lib.rs`, `src/main.rs` and `src/bin/*.rs`, each its own tree.
fn crate_roots(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = read_dir(&root.join("crates"))?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    dirs.push(root.join("xtask"));
    let mut roots = Vec::new();
    for dir in dirs {
        let src = dir.join("src");
        for name in ["lib.rs", "main.rs"] {
            if src.join(name).is_file() {
                roots.push(src.join(name));
            }
        }
        if src.join("bin").is_dir() {
            roots.extend(
                read_dir(&src.join("bin"))?
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "rs")),
            );
        }
    }
    roots.sort();
    Ok(roots)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

/// One module file: its path in the crate, its size, its long functions and the modules
/// it names.
#[derive(Debug)]
struct Module {
    file: PathBuf,
    code_lines: usize,
    long_fns: Vec<(String, usize, usize)>,
    /// Paths it names, as written (`crate::a::b`, `super::c`), already made absolute.
    names: BTreeSet<Vec<String>>,
}

/// What one crate tree holds.
#[derive(Debug, Default)]
struct CrateScan {
    /// By module path (`[]` is the root).
    modules: BTreeMap<Vec<String>, Module>,
    /// Items the root re-exports, by name: the module path they come from.
    root_exports: BTreeMap<String, Vec<String>>,
}

fn scan_crate(root_file: &Path) -> Result<CrateScan, String> {
    let mut scan = CrateScan::default();
    let mut queue = vec![(Vec::<String>::new(), root_file.to_path_buf())];
    while let Some((path, file)) = queue.pop() {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let ast =
            syn::parse_file(&text).map_err(|e| format!("cannot parse {}: {e}", file.display()))?;
        let mut reader = ModuleReader::new(&path);
        reader.visit_file(&ast);
        let test_lines: usize = reader.test_spans.iter().map(|(a, b)| b - a + 1).sum();
        let code_lines = text.lines().count().saturating_sub(test_lines);
        for child in &reader.children {
            let mut child_path = path.clone();
            child_path.push(child.clone());
            queue.push((child_path, child_file(root_file, &file, child)?));
        }
        if path.is_empty() {
            scan.root_exports = reader.root_exports.clone();
        }
        scan.modules.insert(
            path,
            Module {
                file,
                code_lines,
                long_fns: reader.long_fns,
                names: reader.names,
            },
        );
    }
    Ok(scan)
}

/// Where `mod child;` declared in `file` lives.
fn child_file(root_file: &Path, file: &Path, child: &str) -> Result<PathBuf, String> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let base = if file == root_file || stem == "mod" {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    let candidates = [
        base.join(format!("{child}.rs")),
        base.join(child).join("mod.rs"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| format!("`mod {child};` in {}: no file found", file.display()))
}

impl CrateScan {
    fn problems(&self, root: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        for module in self.modules.values() {
            let file = module.file.strip_prefix(root).unwrap_or(&module.file);
            if module.code_lines > MAX_MODULE_LINES {
                problems.push(format!(
                    "{}: {} lines of non-test code (at most {MAX_MODULE_LINES})",
                    file.display(),
                    module.code_lines
                ));
            }
            for (name, line, len) in &module.long_fns {
                problems.push(format!(
                    "{}:{line}: fn `{name}` is {len} lines long (at most {MAX_FN_LINES})",
                    file.display()
                ));
            }
        }
        for cycle in self.cycles() {
            let names: Vec<String> = cycle.iter().map(|m| self.display(m, root)).collect();
            problems.push(format!("import cycle: {}", names.join(" -> ")));
        }
        problems
    }

    fn display(&self, module: &[String], root: &Path) -> String {
        self.modules.get(module).map_or_else(
            || module.join("::"),
            |m| {
                m.file
                    .strip_prefix(root)
                    .unwrap_or(&m.file)
                    .display()
                    .to_string()
            },
        )
    }

    /// The module a named path points into: the longest known module prefix, with an
    /// item the root re-exports taken to its defining module.
    fn resolve(&self, named: &[String]) -> Option<Vec<String>> {
        if let Some(first) = named.first()
            && !self.modules.contains_key(&vec![first.clone()])
            && let Some(from) = self.root_exports.get(first)
        {
            return self.resolve(from);
        }
        (0..=named.len())
            .rev()
            .map(|n| named[..n].to_vec())
            .find(|prefix| self.modules.contains_key(prefix))
    }

    /// Module → the modules it imports, without edges to itself or to its ancestors.
    fn edges(&self) -> BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> {
        self.modules
            .iter()
            .map(|(path, module)| {
                let targets = module
                    .names
                    .iter()
                    .filter_map(|n| self.resolve(n))
                    .filter(|t| !path.starts_with(t))
                    .collect();
                (path, targets)
            })
            .collect()
    }

    /// Every import cycle, each once, as the loop of modules it runs through.
    fn cycles(&self) -> Vec<Vec<Vec<String>>> {
        let edges = self.edges();
        let mut found: BTreeSet<Vec<Vec<String>>> = BTreeSet::new();
        for start in edges.keys() {
            // The shortest way back to `start`, breadth first.
            let mut seen: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
            let mut frontier: Vec<Vec<String>> = vec![(*start).clone()];
            'search: while !frontier.is_empty() {
                let mut next = Vec::new();
                for node in frontier {
                    for target in edges.get(&node).into_iter().flatten() {
                        if target == *start {
                            let mut cycle = vec![target.clone()];
                            let mut at = node.clone();
                            while at != **start {
                                cycle.push(at.clone());
                                at = seen[&at].clone();
                            }
                            cycle.push((*start).clone());
                            cycle.reverse();
                            found.insert(canonical(cycle));
                            break 'search;
                        }
                        if !seen.contains_key(target) {
                            seen.insert(target.clone(), node.clone());
                            next.push(target.clone());
                        }
                    }
                }
                frontier = next;
            }
        }
        found.into_iter().collect()
    }
}

/// A cycle rotated to start at its smallest module, so each is reported once.
fn canonical(mut cycle: Vec<Vec<String>>) -> Vec<Vec<String>> {
    cycle.pop();
    let min = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
    cycle.rotate_left(min);
    cycle.push(cycle[0].clone());
    cycle
}

/// Walks one file: `mod` declarations, test-only spans, long functions, named paths.
struct ModuleReader {
    here: Vec<String>,
    children: Vec<String>,
    test_spans: Vec<(usize, usize)>,
    long_fns: Vec<(String, usize, usize)>,
    names: BTreeSet<Vec<String>>,
    root_exports: BTreeMap<String, Vec<String>>,
    depth: usize,
}

impl ModuleReader {
    fn new(here: &[String]) -> Self {
        Self {
            here: here.to_vec(),
            children: Vec::new(),
            test_spans: Vec::new(),
            long_fns: Vec::new(),
            names: BTreeSet::new(),
            root_exports: BTreeMap::new(),
            depth: 0,
        }
    }

    /// A path made absolute within the crate, if it starts at `crate`, `super` or `self`.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let mut base = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super" | "self") => self.here.clone(),
            // A path relative to this module (`child::Item`): resolve() keeps the longest
            // known module prefix, so `std::...` falls back to this module (no edge).
            Some(_) => {
                let mut v = self.here.clone();
                v.extend(segments.iter().cloned());
                return Some(v);
            }
            None => return None,
        };
        let mut rest = &segments[1..];
        if segments[0] == "super" {
            base.pop();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn record_fn(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.span().start().line;
        let end = block.span().end().line;
        let len = end.saturating_sub(start) + 1;
        if len > MAX_FN_LINES {
            self.long_fns.push((name.to_string(), start, len));
        }
    }

    fn record_use(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, export: bool) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.record_use(prefix, &p.tree, export);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.record_used(prefix, &n.ident, &n.ident, export),
            syn::UseTree::Rename(r) => self.record_used(prefix, &r.ident, &r.rename, export),
            syn::UseTree::Glob(_) => {
                if let Some(abs) = self.absolute(prefix) {
                    self.names.insert(abs);
                }
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.record_use(prefix, tree, export);
                }
            }
        }
    }

    fn record_used(
        &mut self,
        prefix: &[String],
        ident: &syn::Ident,
        alias: &syn::Ident,
        export: bool,
    ) {
        let mut full = prefix.to_vec();
        if ident != "self" {
            full.push(ident.to_string());
        }
        // A root `pub use module::Item;` (written with or without `crate::`).
        if export && self.here.is_empty() && !prefix.is_empty() {
            let from = self.absolute(prefix).unwrap_or_else(|| prefix.to_vec());
            self.root_exports.insert(alias.to_string(), from);
        }
        if let Some(abs) = self.absolute(&full) {
            self.names.insert(abs);
        }
    }
}

/// Whether an item carries `#[cfg(test)]`.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// The lines an item spans, its attributes included.
fn item_lines(attrs: &[syn::Attribute], item: &impl Spanned) -> (usize, usize) {
    let start = attrs
        .first()
        .map_or_else(|| item.span().start().line, |a| a.span().start().line);
    (start, item.span().end().line)
}

fn attrs_of(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        _ => &[],
    }
}

impl<'ast> Visit<'ast> for ModuleReader {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = attrs_of(item);
        if is_test_only(attrs) {
            self.test_spans.push(item_lines(attrs, item));
            return;
        }
        if self.depth == 0
            && let syn::Item::Mod(m) = item
            && m.content.is_none()
        {
            self.children.push(m.ident.to_string());
        }
        if let syn::Item::Use(u) = item {
            let export = !matches!(u.vis, syn::Visibility::Inherited);
            self.record_use(&mut Vec::new(), &u.tree, export);
            return;
        }
        self.depth += 1;
        syn::visit::visit_item(self, item);
        self.depth -= 1;
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        if let syn::ImplItem::Fn(f) = item {
            if is_test_only(&f.attrs) {
                self.test_spans.push(item_lines(&f.attrs, f));
                return;
            }
            self.record_fn(&f.sig.ident, &f.sig, &f.block);
        }
        syn::visit::visit_impl_item(self, item);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.record_fn(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.record_fn(&f.sig.ident, &f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1
            && let Some(abs) = self.absolute(&segments)
        {
            self.names.insert(abs);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`format!("{}", crate::X)`) are tokens, not syntax:
        // read them as tokens.
        fn flat(ts: proc_macro2::TokenStream, out: &mut Vec<String>) {
            for t in ts {
                match t {
                    proc_macro2::TokenTree::Group(g) => {
                        out.push("<g>".into());
                        flat(g.stream(), out);
                        out.push("</g>".into());
                    }
                    other => out.push(other.to_string()),
                }
            }
        }
        let mut tokens: Vec<String> = Vec::new();
        flat(mac.tokens.clone(), &mut tokens);
        for (i, t) in tokens.iter().enumerate() {
            if matches!(t.as_str(), "crate" | "super" | "self") {
                let mut segments = vec![t.clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|c| c == ":")
                    && tokens.get(j + 1).is_some_and(|c| c == ":")
                    && let Some(next) = tokens.get(j + 2)
                {
                    segments.push(next.clone());
                    j += 3;
                }
                if let Some(abs) = self.absolute(&segments) {
                    self.names.insert(abs);
                }
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate on disk with `files` (path under `src/`, text).
    fn fake_crate(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let file = dir.join("src").join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        dir
    }

    fn problems(dir: &Path) -> Vec<String> {
        let scan = scan_crate(&dir.join("src/lib.rs")).unwrap();
        let found = scan.problems(dir);
        std::fs::remove_dir_all(dir).unwrap();
        found
    }

    #[test]
    fn a_sibling_import_cycle_is_found_through_a_root_re_export() {
        let dir = fake_crate(
            "cycle",
            &[
                ("lib.rs", "mod a;\nmod b;\npub use b::Thing;\n"),
                ("a.rs", "pub struct A;\nfn f(_: crate::Thing) {}\n"),
                ("b.rs", "pub struct Thing;\nuse crate::a::A;\n"),
            ],
        );
        let found = problems(&dir);
        assert_eq!(found, ["import cycle: src/a.rs -> src/b.rs -> src/a.rs"]);
    }

    #[test]
    fn a_child_reading_its_parent_is_no_cycle_and_tests_do_not_count() {
        let dir = fake_crate(
            "facade",
            &[
                ("lib.rs", "mod p;\n"),
                ("p.rs", "mod c;\npub use c::C;\npub struct P;\n"),
                (
                    "p/c.rs",
                    "pub struct C(super::P);\n#[cfg(test)]\nmod tests {\n    use crate::p;\n}\n",
                ),
            ],
        );
        assert!(problems(&dir).is_empty());
    }

    #[test]
    fn long_functions_and_modules_are_named_with_their_length() {
        let body = "    let _x = 1;\n".repeat(MAX_FN_LINES - 1);
        let long = format!("fn long() {{\n{body}}}\n");
        let short = format!("fn short() {{\n{}}}\n", "    let _x = 1;\n".repeat(10));
        let module = short.repeat(MAX_MODULE_LINES / 12 + 1);
        let tests = format!("#[cfg(test)]\nmod tests {{\n{long}}}\n");
        let dir = fake_crate(
            "sizes",
            &[
                ("lib.rs", &format!("mod big;\n{long}{tests}")),
                ("big.rs", &module),
            ],
        );
        let mut found = problems(&dir);
        found.sort();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("src/big.rs: 612 lines"), "{found:?}");
        assert!(
            found[1].starts_with("src/lib.rs:2: fn `long` is 71 lines"),
            "{found:?}"
        );
    }

    /// Regression: a path relative to a child module (`c::C`) and a path nested in a
    /// macro's group (`g(crate::b::B)`) made no edge, so cycles through them went unseen.
    #[test]
    fn cycles_through_relative_paths_and_macro_groups_are_found() {
        let relative = fake_crate(
            "relative",
            &[
                ("lib.rs", "mod p;\nmod q;\n"),
                ("p.rs", "mod c;\npub struct P;\npub fn f(_: c::C) {}\n"),
                ("p/c.rs", "pub struct C;\npub fn g(_: crate::q::Q) {}\n"),
                ("q.rs", "pub struct Q;\npub fn h(_: crate::p::P) {}\n"),
            ],
        );
        let in_macro = fake_crate(
            "in-macro",
            &[
                ("lib.rs", "mod a;\nmod b;\n"),
                (
                    "a.rs",
                    "pub struct A;\npub fn f() { println!(\"{}\", g(self::super::b::B)); }\n",
                ),
                ("b.rs", "pub struct B;\npub fn h(_: crate::a::A) {}\n"),
            ],
        );
        for dir in [relative, in_macro] {
            let found = problems(&dir);
            assert!(
                found.iter().any(|p| p.contains("import cycle")),
                "no cycle reported: {found:?}"
            );
        }
        // A path into another crate (`std::fmt`) is no edge.
        let outside = fake_crate(
            "outside",
            &[
                ("lib.rs", "mod a;\nmod b;\n"),
                ("a.rs", "pub fn f(_: std::fmt::Error) {}\n"),
                ("b.rs", "pub fn h(_: crate::a::A) {}\n"),
            ],
        );
        assert!(problems(&outside).is_empty(), "{:?}", problems(&outside));
    }

    #[test]
    fn the_workspace_keeps_the_rules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check(root).unwrap_or_else(|e| panic!("{e}"));
    }
}
