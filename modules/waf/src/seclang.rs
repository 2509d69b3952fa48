//! SecLang text into directives: the Apache-style configuration syntax ModSecurity rule
//! files are written in (line continuations with `\`, `#` comments, arguments separated by
//! white space, double- or single-quoted arguments where a backslash escapes only the
//! quote). Written by hand: no maintained crate reads this dialect, and the rules are a
//! few hundred lines of grammar.

use std::fmt;

/// One directive as written: `SecRule ARGS "@rx foo" "id:1,deny"` is name `SecRule` and
/// three arguments, quotes removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The line the directive starts on (1-based).
    pub line: usize,
    pub name: String,
    pub args: Vec<String>,
}

/// A syntax error in a rule file, by line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

/// Splits a rule file into directives.
pub fn directives(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if logical.is_empty() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start = index + 1;
        }
        // A backslash that ends the line joins the next one (Apache's rule, which CRS
        // uses on almost every rule).
        match line.strip_suffix('\\') {
            Some(head) => logical.push_str(head),
            None => {
                logical.push_str(line);
                out.push(directive(start, &logical)?);
                logical.clear();
            }
        }
    }
    if !logical.is_empty() {
        out.push(directive(start, &logical)?);
    }
    Ok(out)
}

fn directive(line: usize, text: &str) -> Result<Directive, SyntaxError> {
    let words = split_args(text).map_err(|reason| SyntaxError { line, reason })?;
    let mut words = words.into_iter();
    let name = words.next().unwrap_or_default();
    Ok(Directive {
        line,
        name,
        args: words.collect(),
    })
}

/// Apache's argument splitting: white space separates; `"..."` and `'...'` group, and
/// inside them a backslash before the quote character stands for the quote (every other
/// backslash stays, so regular expressions keep theirs).
fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' || c == '\'' {
            let quote = c;
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                if c == '\\' {
                    if let Some(&(_, next)) = chars.peek() {
                        if next == quote {
                            word.push(quote);
                            chars.next();
                            continue;
                        }
                    }
                    word.push('\\');
                } else if c == quote {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated {quote}-quoted argument"));
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// One action of an action list: `id:942100`, `deny`, `setvar:'tx.score=+5'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAction {
    pub name: String,
    pub value: Option<String>,
}

impl fmt::Display for RawAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// Splits `"id:1,phase:2,msg:'a, b',t:none"` into actions: commas separate except inside
/// single quotes; a value in single quotes loses them (`\'` inside stands for `'`).
pub fn actions(text: &str) -> Result<Vec<RawAction>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && chars.peek() == Some(&'\'') => {
                current.push('\\');
                current.push('\'');
                chars.next();
            }
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => {
                push_action(&mut out, &current)?;
                current.clear();
            }
            _ => current.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quote in actions `{text}`"));
    }
    push_action(&mut out, &current)?;
    Ok(out)
}

fn push_action(out: &mut Vec<RawAction>, text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    let (name, value) = match text.split_once(':') {
        Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
        None => (text, None),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("invalid action `{text}`"));
    }
    out.push(RawAction {
        name: name.to_string(),
        value,
    });
    Ok(())
}

fn unquote(value: &str) -> String {
    let inner = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    inner.replace("\\'", "'")
}

/// One entry of a variable list: `ARGS`, `!ARGS:foo`, `&TX:score`,
/// `REQUEST_HEADERS:/^x-/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawTarget {
    pub collection: String,
    pub selector: Option<RawSelector>,
    pub exclude: bool,
    pub count: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawSelector {
    Key(String),
    Regex(String),
}

/// Splits `REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|ARGS:foo` on `|`, except inside a
/// `/regex/` selector (which may itself hold `|`).
pub fn targets(text: &str) -> Result<Vec<RawTarget>, String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let mut exclude = false;
        let mut count = false;
        while i < bytes.len() && (bytes[i] == b'!' || bytes[i] == b'&') {
            if bytes[i] == b'!' {
                exclude = true;
            } else {
                count = true;
            }
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && bytes[i] != b':' && bytes[i] != b'|' {
            i += 1;
        }
        let collection = text[name_start..i].trim().to_string();
        if collection.is_empty() {
            return Err(format!("empty variable name in `{text}`"));
        }
        let mut selector = None;
        if i < bytes.len() && bytes[i] == b':' {
            i += 1;
            // XML's selector is an XPath expression (`XML:/*`), never a regex.
            if i < bytes.len() && bytes[i] == b'/' && !collection.eq_ignore_ascii_case("XML") {
                // A regex selector runs to the next unescaped `/` that ends the entry.
                let start = i + 1;
                let mut j = start;
                let mut end = None;
                while j < bytes.len() {
                    match bytes[j] {
                        b'\\' => j += 2,
                        b'/' if j + 1 == bytes.len() || bytes[j + 1] == b'|' => {
                            end = Some(j);
                            break;
                        }
                        _ => j += 1,
                    }
                }
                let end =
                    end.ok_or_else(|| format!("unterminated /regex/ selector in `{text}`"))?;
                selector = Some(RawSelector::Regex(text[start..end].to_string()));
                i = end + 1;
            } else {
                let start = i;
                while i < bytes.len() && bytes[i] != b'|' {
                    i += 1;
                }
                let key = text[start..i].trim();
                let key = key
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .unwrap_or(key);
                if key.is_empty() {
                    return Err(format!("empty selector after `{collection}:`"));
                }
                selector = Some(RawSelector::Key(key.to_string()));
            }
        }
        out.push(RawTarget {
            collection,
            selector,
            exclude,
            count,
        });
        if i < bytes.len() {
            if bytes[i] != b'|' {
                return Err(format!("expected `|` at byte {i} of `{text}`"));
            }
            i += 1;
            if i == bytes.len() {
                return Err(format!("trailing `|` in `{text}`"));
            }
        }
    }
    if out.is_empty() {
        return Err("no variables".into());
    }
    Ok(out)
}

/// `"@rx ^a"`, `"!@eq 0"`, or a bare regex (`"^a"` is `@rx ^a`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOperator {
    pub name: String,
    pub argument: String,
    pub negated: bool,
}

pub fn operator(text: &str) -> RawOperator {
    let trimmed = text.trim_start();
    let (negated, rest) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, trimmed),
    };
    match rest.strip_prefix('@') {
        Some(op) => {
            let (name, argument) = match op.find(char::is_whitespace) {
                Some(at) => (&op[..at], op[at..].trim_start()),
                None => (op, ""),
            };
            RawOperator {
                name: name.to_string(),
                argument: argument.to_string(),
                negated,
            }
        }
        None => RawOperator {
            name: "rx".into(),
            argument: rest.to_string(),
            negated,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_and_comments_are_skipped() {
        let text = "# comment\nSecRule ARGS \"@rx a\\\"b\" \\\n    \"id:1,\\\n    deny\"\n\n  # indented comment\nSecMarker END\n";
        let d = directives(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[0].name, "SecRule");
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b", "id:1,    deny"]);
        assert_eq!(d[1].line, 7);
        assert_eq!(d[1].args, vec!["END"]);
    }

    #[test]
    fn backslashes_other_than_before_the_quote_stay() {
        let d = directives(r#"SecRule ARGS "@rx \d+\\x" "id:1""#).unwrap();
        assert_eq!(d[0].args[1], r"@rx \d+\\x");
    }

    #[test]
    fn an_unterminated_quote_is_an_error_with_its_line() {
        let e = directives("\n\nSecRule ARGS \"@rx a").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("unterminated"), "{e}");
    }

    #[test]
    fn actions_split_outside_quotes() {
        let a = actions(
            "id:1, phase:2,msg:'a, b: c',t:none,setvar:'tx.x=+%{tx.y}',capture,logdata:'it\\'s'",
        )
        .unwrap();
        let shown: Vec<String> = a.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "id:1",
                "phase:2",
                "msg:a, b: c",
                "t:none",
                "setvar:tx.x=+%{tx.y}",
                "capture",
                "logdata:it's"
            ]
        );
        assert!(actions("id:1,msg:'open").is_err());
        assert!(actions("id:1,bad action").is_err());
    }

    #[test]
    fn targets_keep_regex_selectors_whole() {
        let t = targets("REQUEST_COOKIES|!REQUEST_COOKIES:/^(?:a|b)$/|&TX:score|ARGS:foo|XML:/*")
            .unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[1].selector, Some(RawSelector::Regex("^(?:a|b)$".into())));
        assert!(t[1].exclude);
        assert!(t[2].count);
        assert_eq!(t[2].selector, Some(RawSelector::Key("score".into())));
        assert_eq!(t[4].selector, Some(RawSelector::Key("/*".into())));
        assert!(targets("ARGS|").is_err());
        assert!(targets("ARGS:/open").is_err());
        assert!(targets("ARGS:").is_err());
    }

    #[test]
    fn operators_default_to_rx() {
        assert_eq!(
            operator("!@eq 0"),
            RawOperator {
                name: "eq".into(),
                argument: "0".into(),
                negated: true
            }
        );
        assert_eq!(operator("^a b").name, "rx");
        assert_eq!(operator("@unconditionalMatch").argument, "");
    }
}
