//! Config files as text: reading, region overlays, and finding the line of a key so every
//! error can name file, line and key.

use std::path::{Path, PathBuf};

/// One parsed file, kept with its text so errors can point into it.
pub struct SourceFile {
    pub path: PathBuf,
    text: String,
    doc: toml_edit::ImDocument<String>,
}

/// A key path inside the config, as serde and validation report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Renders `routes[2].origin`.
pub fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl SourceFile {
    /// Reads and parses one TOML file. Syntax errors come back as (line, message).
    pub fn read(path: &Path) -> Result<Self, (Option<usize>, String)> {
        let text =
            std::fs::read_to_string(path).map_err(|e| (None, format!("cannot read: {e}")))?;
        let doc = toml_edit::ImDocument::parse(text.clone()).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start));
            (line, e.message().trim().to_owned())
        })?;
        Ok(SourceFile {
            path: path.to_owned(),
            text,
            doc,
        })
    }

    pub fn table(&self) -> Result<toml::Table, String> {
        toml::from_str(&self.text).map_err(|e| e.message().to_owned())
    }

    /// The line (1-based) where the deepest existing part of `path` is written, or `None`
    /// if not even its first key is in this file.
    pub fn line_of(&self, path: &[Segment]) -> Option<usize> {
        let mut item: &toml_edit::Item = self.doc.as_item();
        let mut best = None;
        for segment in path {
            let (span, next) = match segment {
                Segment::Key(key) => {
                    let Some((k, v)) = item.as_table_like().and_then(|t| t.get_key_value(key))
                    else {
                        break;
                    };
                    (k.span().or_else(|| v.span()), v)
                }
                Segment::Index(i) => {
                    let Some(v) = item.get(*i) else { break };
                    (v.span(), v)
                }
            };
            if let Some(span) = span {
                best = Some(line_of(&self.text, span.start));
            }
            item = next;
        }
        best
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Merges `overlay` into `base`: tables merge key by key, any other value (arrays
/// included) replaces the base's value. A region overlay changes only what it names.
pub fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        SourceFile::read(&path).unwrap()
    }

    #[test]
    fn finds_lines_of_nested_keys_and_array_entries() {
        let f = file("[server]\nlisten = \"x\"\n\n[[routes]]\norigin = \"a\"\n\n[[routes]]\nprefix = \"/v\"\norigin = \"b\"\n");
        let key = |k: &str| Segment::Key(k.into());
        assert_eq!(f.line_of(&[key("server"), key("listen")]), Some(2));
        assert_eq!(
            f.line_of(&[key("routes"), Segment::Index(1), key("origin")]),
            Some(9)
        );
        // A missing leaf falls back to the deepest part that exists.
        assert_eq!(
            f.line_of(&[key("routes"), Segment::Index(0), key("host")]),
            Some(4)
        );
        assert_eq!(f.line_of(&[key("nothing")]), None);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[server]\nlisten = \n").unwrap();
        let (line, _) = SourceFile::read(&path).err().unwrap();
        assert_eq!(line, Some(2));
    }

    #[test]
    fn overlay_merges_tables_and_replaces_values() {
        let mut base: toml::Table =
            toml::from_str("[server]\nlisten = \"a\"\nworkers = 2\n[origins.m]\nprimary = \"p\"\n")
                .unwrap();
        let overlay: toml::Table =
            toml::from_str("[server]\nworkers = 4\n[origins.m]\nsecondary = \"s\"\n").unwrap();
        merge(&mut base, overlay);
        assert_eq!(base["server"]["listen"].as_str(), Some("a"));
        assert_eq!(base["server"]["workers"].as_integer(), Some(4));
        assert_eq!(base["origins"]["m"]["primary"].as_str(), Some("p"));
        assert_eq!(base["origins"]["m"]["secondary"].as_str(), Some("s"));
    }

    #[test]
    fn renders_paths() {
        let p = [
            Segment::Key("routes".into()),
            Segment::Index(2),
            Segment::Key("origin".into()),
        ];
        assert_eq!(render(&p), "routes[2].origin");
    }
}
