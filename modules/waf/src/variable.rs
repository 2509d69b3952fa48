//! Variables a rule inspects: the collection (`ARGS`), an optional selector (`ARGS:foo`,
//! `ARGS:/^id_/`), exclusions (`!ARGS:foo`) and counting (`&ARGS`).

use crate::seclang::{RawSelector, RawTarget};
use regex::bytes::{Regex, RegexBuilder};

macro_rules! collections {
    ($($variant:ident = $name:literal $(, $kind:ident)?;)*) => {
        /// Every variable the engine knows, by its SecLang name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Collection { $($variant,)* }

        impl Collection {
            pub fn from_name(name: &str) -> Option<Collection> {
                $(if name.eq_ignore_ascii_case($name) { return Some(Collection::$variant); })*
                None
            }

            pub fn name(self) -> &'static str {
                match self { $(Collection::$variant => $name,)* }
            }
        }
    };
}

collections! {
    Args = "ARGS";
    ArgsGet = "ARGS_GET";
    ArgsPost = "ARGS_POST";
    ArgsNames = "ARGS_NAMES";
    ArgsGetNames = "ARGS_GET_NAMES";
    ArgsPostNames = "ARGS_POST_NAMES";
    ArgsCombinedSize = "ARGS_COMBINED_SIZE";
    RequestHeaders = "REQUEST_HEADERS";
    RequestHeadersNames = "REQUEST_HEADERS_NAMES";
    RequestCookies = "REQUEST_COOKIES";
    RequestCookiesNames = "REQUEST_COOKIES_NAMES";
    RequestUri = "REQUEST_URI";
    RequestUriRaw = "REQUEST_URI_RAW";
    RequestFilename = "REQUEST_FILENAME";
    RequestBasename = "REQUEST_BASENAME";
    RequestLine = "REQUEST_LINE";
    RequestMethod = "REQUEST_METHOD";
    RequestProtocol = "REQUEST_PROTOCOL";
    QueryString = "QUERY_STRING";
    RequestBody = "REQUEST_BODY";
    RequestBodyLength = "REQUEST_BODY_LENGTH";
    RemoteAddr = "REMOTE_ADDR";
    RemotePort = "REMOTE_PORT";
    ServerName = "SERVER_NAME";
    Files = "FILES";
    FilesNames = "FILES_NAMES";
    FilesSizes = "FILES_SIZES";
    FilesCombinedSize = "FILES_COMBINED_SIZE";
    MultipartPartHeaders = "MULTIPART_PART_HEADERS";
    MultipartStrictError = "MULTIPART_STRICT_ERROR";
    MultipartUnmatchedBoundary = "MULTIPART_UNMATCHED_BOUNDARY";
    ReqbodyProcessor = "REQBODY_PROCESSOR";
    ReqbodyError = "REQBODY_ERROR";
    ReqbodyErrorMsg = "REQBODY_ERROR_MSG";
    Xml = "XML";
    Tx = "TX";
    MatchedVar = "MATCHED_VAR";
    MatchedVars = "MATCHED_VARS";
    MatchedVarName = "MATCHED_VAR_NAME";
    MatchedVarsNames = "MATCHED_VARS_NAMES";
    UniqueId = "UNIQUE_ID";
    // Persistent collections (initcol) are not kept by this engine: always empty.
    Ip = "IP";
    Global = "GLOBAL";
    Session = "SESSION";
    User = "USER";
    // Response side: parsed so CRS loads whole, never populated (the WAF inspects requests).
    ResponseBody = "RESPONSE_BODY";
    ResponseStatus = "RESPONSE_STATUS";
    ResponseHeaders = "RESPONSE_HEADERS";
    ResponseHeadersNames = "RESPONSE_HEADERS_NAMES";
    ResponseContentType = "RESPONSE_CONTENT_TYPE";
    ResponseContentLength = "RESPONSE_CONTENT_LENGTH";
    ResponseProtocol = "RESPONSE_PROTOCOL";
}

impl Collection {
    /// Collections of key/value pairs (a selector picks some); the rest are single values.
    pub fn is_keyed(self) -> bool {
        use Collection::*;
        matches!(
            self,
            Args | ArgsGet
                | ArgsPost
                | ArgsNames
                | ArgsGetNames
                | ArgsPostNames
                | RequestHeaders
                | RequestHeadersNames
                | RequestCookies
                | RequestCookiesNames
                | Files
                | FilesNames
                | FilesSizes
                | MultipartPartHeaders
                | Xml
                | Tx
                | MatchedVars
                | MatchedVarsNames
                | Ip
                | Global
                | Session
                | User
                | ResponseHeaders
                | ResponseHeadersNames
        )
    }
}

/// Which members of a collection.
#[derive(Clone, Debug)]
pub enum Selector {
    All,
    /// Keys compare ASCII case-insensitively, as ModSecurity does; stored lower-case.
    Key(String),
    Regex(Regex),
}

impl Selector {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k) => key.eq_ignore_ascii_case(k.as_bytes()),
            Selector::Regex(r) => r.is_match(key),
        }
    }

    /// How it was written, for messages and `MATCHED_VAR_NAME`.
    pub fn describe(&self) -> Option<String> {
        match self {
            Selector::All => None,
            Selector::Key(k) => Some(k.clone()),
            Selector::Regex(r) => Some(format!("/{}/", r.as_str().trim_start_matches("(?i)"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Target {
    pub collection: Collection,
    pub selector: Selector,
    /// `&ARGS`: the number of members instead of their values.
    pub count: bool,
}

#[derive(Clone, Debug)]
pub struct Exclusion {
    pub collection: Collection,
    pub selector: Selector,
}

impl Exclusion {
    pub fn excludes(&self, collection: Collection, key: &[u8]) -> bool {
        self.collection == collection && self.selector.matches(key)
    }
}

/// A rule's whole variable list.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    pub include: Vec<Target>,
    pub exclude: Vec<Exclusion>,
}

impl Targets {
    pub fn parse(raw: &[RawTarget]) -> Result<Targets, String> {
        let mut targets = Targets::default();
        for t in raw {
            targets.add(t)?;
        }
        if targets.include.is_empty() {
            return Err("only exclusions, no variable to inspect".into());
        }
        Ok(targets)
    }

    /// Adds one entry (also how `SecRuleUpdateTargetById` and `ctl:ruleRemoveTargetById`
    /// change a rule).
    pub fn add(&mut self, raw: &RawTarget) -> Result<(), String> {
        let collection = Collection::from_name(&raw.collection)
            .ok_or_else(|| format!("unknown variable `{}`", raw.collection))?;
        let selector = match &raw.selector {
            None => Selector::All,
            Some(_) if !collection.is_keyed() => {
                return Err(format!("`{}` takes no selector", collection.name()));
            }
            Some(RawSelector::Key(k)) => Selector::Key(k.to_ascii_lowercase()),
            Some(RawSelector::Regex(r)) => Selector::Regex(
                RegexBuilder::new(r)
                    .case_insensitive(true)
                    .unicode(false)
                    .build()
                    .or_else(|_| RegexBuilder::new(r).case_insensitive(true).build())
                    .map_err(|e| format!("selector /{r}/: {e}"))?,
            ),
        };
        if raw.exclude {
            self.exclude.push(Exclusion {
                collection,
                selector,
            });
        } else {
            self.include.push(Target {
                collection,
                selector,
                count: raw.count,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seclang::targets;

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(
            Collection::from_name("request_headers"),
            Some(Collection::RequestHeaders)
        );
        assert_eq!(Collection::from_name("NOPE"), None);
        assert_eq!(Collection::Args.name(), "ARGS");
    }

    #[test]
    fn lists_compile_with_exclusions() {
        let t = Targets::parse(&targets("ARGS|!ARGS:Foo|REQUEST_HEADERS:/^x-/|&TX:score").unwrap())
            .unwrap();
        assert_eq!(t.include.len(), 3);
        assert!(t.exclude[0].excludes(Collection::Args, b"FOO"));
        assert!(!t.exclude[0].excludes(Collection::ArgsGet, b"foo"));
        assert!(t.include[1].selector.matches(b"X-Real"));
        assert!(t.include[2].count);
    }

    #[test]
    fn bad_lists_say_why() {
        let e = Targets::parse(&targets("ARGZ").unwrap()).unwrap_err();
        assert!(e.contains("unknown variable `ARGZ`"), "{e}");
        let e = Targets::parse(&targets("REQUEST_METHOD:x").unwrap()).unwrap_err();
        assert!(e.contains("takes no selector"), "{e}");
        let e = Targets::parse(&targets("ARGS:/(/").unwrap()).unwrap_err();
        assert!(e.contains("selector"), "{e}");
        let e = Targets::parse(&targets("!ARGS:a").unwrap()).unwrap_err();
        assert!(e.contains("only exclusions"), "{e}");
    }
}
