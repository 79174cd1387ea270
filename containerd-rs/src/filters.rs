//! containerd's filter syntax, which `List` calls take (`ctr containers ls 'labels.app==web'`):
//!
//! ```text
//! filters   := selector ("," selector)*          all must match; several filters: any
//! selector  := fieldpath (operator value)?       no operator: the field is present
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z_][A-Za-z0-9_]*
//! operator  := "==" | "!=" | "~="                "~=": the value is a regular expression
//! value     := quoted | [^,\s]+                 (quoted if it starts with '"', '/' or '|')
//! quoted    := '"' ... '"' (with \" \\ escapes) | '/' ... '/' | '|' ... '|' (regexes; dockerd
//!              subscribes with `topic~=|^/tasks/|`)
//! ```
//!
//! An object is matched through [`Fields`], which names its values by field path.

use std::fmt;

use regex::Regex;

/// An object that filters can look into: its value at a field path, if it has one.
pub trait Fields {
    fn field(&self, path: &[String]) -> Option<String>;
}

/// How a selector compares a field with its value.
#[derive(Debug, Clone)]
pub enum Operator {
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

/// One `fieldpath [operator value]`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub path: Vec<String>,
    /// `None`: the field only has to be present.
    pub operator: Option<Operator>,
}

/// Filter strings that could not be parsed (InvalidArgument on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {input:?}: {message} at position {position}")]
pub struct FilterError {
    pub input: String,
    pub position: usize,
    pub message: String,
}

/// Parsed filters: an object matches if it matches all selectors of any one filter; no
/// filters match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any_of: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses each of `filters` (empty strings are ignored).
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Self, FilterError> {
        let any_of = filters
            .iter()
            .map(AsRef::as_ref)
            .filter(|f| !f.trim().is_empty())
            .map(parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { any_of })
    }

    /// Whether `object` passes.
    pub fn matches(&self, object: &impl Fields) -> bool {
        self.any_of.is_empty()
            || self
                .any_of
                .iter()
                .any(|all| all.iter().all(|s| s.matches(object)))
    }
}

impl Selector {
    /// Whether `object`'s field passes this selector; an absent field never does.
    pub fn matches(&self, object: &impl Fields) -> bool {
        let Some(value) = object.field(&self.path) else {
            return false;
        };
        match &self.operator {
            None => true,
            Some(Operator::Equal(v)) => value == *v,
            Some(Operator::NotEqual(v)) => value != *v,
            Some(Operator::Matches(re)) => re.is_match(&value),
        }
    }
}

/// Parses one filter string into its selectors.
pub fn parse(input: &str) -> Result<Vec<Selector>, FilterError> {
    let mut parser = Parser {
        input,
        chars: input.char_indices().collect(),
        at: 0,
    };
    let mut selectors = vec![parser.selector()?];
    loop {
        parser.skip_spaces();
        match parser.peek() {
            None => return Ok(selectors),
            Some(',') => {
                parser.at += 1;
                selectors.push(parser.selector()?);
            }
            Some(c) => return Err(parser.error(format!("unexpected {c:?}, expected ','"))),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<(usize, char)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|(_, c)| *c)
    }

    fn position(&self) -> usize {
        self.chars
            .get(self.at)
            .map_or(self.input.len(), |(i, _)| *i)
    }

    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            input: self.input.to_string(),
            position: self.position(),
            message: message.into(),
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        self.skip_spaces();
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.at += 1;
            path.push(self.field()?);
        }
        self.skip_spaces();
        let operator = match self.operator_token() {
            None => None,
            Some(op) => {
                self.skip_spaces();
                let value = self.value()?;
                Some(match op {
                    "==" => Operator::Equal(value),
                    "!=" => Operator::NotEqual(value),
                    _ => Operator::Matches(
                        Regex::new(&value).map_err(|e| self.error(format!("bad regex: {e}")))?,
                    ),
                })
            }
        };
        Ok(Selector { path, operator })
    }

    fn operator_token(&mut self) -> Option<&'static str> {
        let two: String = self
            .chars
            .iter()
            .skip(self.at)
            .take(2)
            .map(|(_, c)| c)
            .collect();
        let op = match two.as_str() {
            "==" => "==",
            "!=" => "!=",
            "~=" => "~=",
            _ => return None,
        };
        self.at += 2;
        Some(op)
    }

    fn field(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some('"') | Some('/') => self.quoted(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.at += 1;
                }
                Ok(self.chars[start..self.at].iter().map(|(_, c)| c).collect())
            }
            Some(c) => Err(self.error(format!("unexpected {c:?}, expected a field name"))),
            None => Err(self.error("expected a field name")),
        }
    }

    fn value(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some('"') | Some('/') | Some('|') => self.quoted(),
            _ => {
                let start = self.at;
                while self.peek().is_some_and(|c| !c.is_whitespace() && c != ',') {
                    self.at += 1;
                }
                if start == self.at {
                    return Err(self.error("expected a value"));
                }
                Ok(self.chars[start..self.at].iter().map(|(_, c)| c).collect())
            }
        }
    }

    /// A string between `"` or `/`; a backslash escapes the quote and itself.
    fn quoted(&mut self) -> Result<String, FilterError> {
        let quote = self.peek().unwrap_or('"');
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error(format!("unterminated {quote}-quoted string"))),
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c) if c == quote || c == '\\' => out.push(c),
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        // A regex escape such as \d stays as it is.
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err(self.error("unterminated escape")),
                    }
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }
}

impl fmt::Display for Selector {
    /// The selector in the syntax it was parsed from (everything quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let path: Vec<String> = self.path.iter().map(|p| quote(p)).collect();
        write!(f, "{}", path.join("."))?;
        match &self.operator {
            None => Ok(()),
            Some(Operator::Equal(v)) => write!(f, "=={}", quote(v)),
            Some(Operator::NotEqual(v)) => write!(f, "!={}", quote(v)),
            Some(Operator::Matches(re)) => write!(f, "~={}", quote(re.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// An object with an id, an image and labels, as containers have.
    struct Object {
        id: String,
        image: String,
        labels: BTreeMap<String, String>,
    }

    impl Fields for Object {
        fn field(&self, path: &[String]) -> Option<String> {
            match path {
                [f] if f == "id" => Some(self.id.clone()),
                [f] if f == "image" => Some(self.image.clone()),
                [f, key] if f == "labels" => self.labels.get(key).cloned(),
                _ => None,
            }
        }
    }

    fn web() -> Object {
        Object {
            id: "web-1".into(),
            image: "docker.io/library/busybox:latest".into(),
            labels: [
                ("app".to_string(), "web".to_string()),
                ("io.k8s/name".to_string(), "x".to_string()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn passes(filters: &[&str]) -> bool {
        Filter::parse_all(filters).unwrap().matches(&web())
    }

    #[test]
    fn containerd_examples() {
        assert!(passes(&[]));
        assert!(passes(&["id==web-1"]));
        assert!(passes(&["image==docker.io/library/busybox:latest"]));
        assert!(passes(&["labels.app==web"]));
        assert!(passes(&[r#"labels."io.k8s/name"==x"#]));
        assert!(passes(&["labels.app"]));
        assert!(!passes(&["labels.missing"]));
        assert!(passes(&["id~=^web-[0-9]$"]));
        assert!(passes(&["id~=/^web-\\d$/"]));
        assert!(passes(&["id~=|^web-|"]), "dockerd's quoting");
        assert!(!passes(&["id~=|^db-|"]));
        assert!(passes(&["labels.app==web, id!=db"]));
        assert!(!passes(&["labels.app==web,id==db"]));
        assert!(passes(&["id==db", "labels.app==web"]), "filters are ORed");
        assert!(!passes(&["labels.missing!=x"]), "absent fields never match");
    }

    #[test]
    fn syntax_errors_name_the_position() {
        for bad in [
            "==x",
            "id==",
            "id==x,",
            "id=x",
            "labels.\"open",
            "id~=(",
            "1abc",
            "id==x y",
        ] {
            let err = Filter::parse_all(&[bad]).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.position <= bad.len(), "{err}");
        }
    }

    fn any_selector() -> impl Strategy<Value = Selector> {
        let text = "[ -~]{0,12}";
        let path = prop::collection::vec(text, 1..4);
        let op = prop_oneof![
            Just(None),
            text.prop_map(|v| Some(Operator::Equal(v))),
            text.prop_map(|v| Some(Operator::NotEqual(v))),
        ];
        (path, op).prop_map(|(path, operator)| Selector { path, operator })
    }

    proptest! {
        #[test]
        fn never_panics(input in any::<String>()) {
            let _ = Filter::parse_all(&[input]);
        }

        #[test]
        fn printed_selectors_parse_back(selectors in prop::collection::vec(any_selector(), 1..4)) {
            let text: Vec<String> = selectors.iter().map(ToString::to_string).collect();
            let parsed = parse(&text.join(",")).unwrap();
            prop_assert_eq!(parsed.len(), selectors.len());
            for (a, b) in parsed.iter().zip(&selectors) {
                prop_assert_eq!(a.to_string(), b.to_string());
            }
        }
    }
}
