//! Macro expansion in action values and operator arguments: `%{tx.score}`,
//! `%{MATCHED_VAR}`, `%{REQUEST_HEADERS.host}`, `%{rule.id}`. Parsed once at load into
//! pieces; expanded per request only where a `%{` appears.

/// A reference inside `%{...}`: a collection name and an optional key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroVar {
    /// Upper-case: `TX`, `MATCHED_VAR`, `RULE`, `REQUEST_HEADERS`.
    pub collection: String,
    /// Lower-case: `score`, `id`, `user-agent`.
    pub key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(MacroVar),
}

/// A string with macros, ready to expand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Gives macro references their values (the transaction implements it).
pub trait Resolve {
    fn resolve(&self, var: &MacroVar, out: &mut Vec<u8>);
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let inner = &rest[start + 2..start + 2 + len];
            let (collection, key) = match inner.split_once(['.', ':']) {
                Some((c, k)) => (c, Some(k.to_ascii_lowercase())),
                None => (inner, None),
            };
            pieces.push(Piece::Var(MacroVar {
                collection: collection.to_ascii_uppercase(),
                key,
            }));
            rest = &rest[start + 2 + len + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Template { pieces }
    }

    /// The text as it is when it holds no macro.
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The text before the first macro ("" when it starts with one).
    pub fn literal_prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Text(t)) => t,
            _ => "",
        }
    }

    pub fn vars(&self) -> impl Iterator<Item = &MacroVar> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Text(_) => None,
        })
    }

    pub fn expand(&self, resolver: &dyn Resolve) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Var(v) => resolver.resolve(v, &mut out),
            }
        }
        out
    }

    pub fn expand_string(&self, resolver: &dyn Resolve) -> String {
        match self.literal() {
            Some(t) => t.to_string(),
            None => String::from_utf8_lossy(&self.expand(resolver)).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Resolve for Fixed {
        fn resolve(&self, var: &MacroVar, out: &mut Vec<u8>) {
            out.extend_from_slice(
                format!("<{}|{}>", var.collection, var.key.as_deref().unwrap_or("")).as_bytes(),
            );
        }
    }

    #[test]
    fn pieces_expand_in_order() {
        let t = Template::parse("a %{tx.Score} b %{MATCHED_VAR}%{request_headers:Host}");
        assert_eq!(t.literal(), None);
        assert_eq!(
            String::from_utf8(t.expand(&Fixed)).unwrap(),
            "a <TX|score> b <MATCHED_VAR|><REQUEST_HEADERS|host>"
        );
    }

    #[test]
    fn text_without_macros_is_literal() {
        assert_eq!(Template::parse("plain").literal(), Some("plain"));
        assert_eq!(Template::parse("").literal(), Some(""));
        // An unterminated reference stays text.
        assert_eq!(Template::parse("a %{tx.b").literal(), Some("a %{tx.b"));
    }
}
