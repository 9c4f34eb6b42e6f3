//! A small, bounded element tree built with quick-xml.
//!
//! Limits: nesting depth, element count, attributes per element and total
//! text; a DOCTYPE is rejected outright, so no entity can be declared, and
//! only the five predefined entities and character references are resolved
//! (no entity expansion of any kind).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Parser limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum element nesting depth.
    pub max_depth: usize,
    /// Maximum number of elements in one document.
    pub max_elements: usize,
    /// Maximum attributes on one element.
    pub max_attributes: usize,
    /// Maximum total characters of text and attribute values.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 40,
            max_elements: 100_000,
            max_attributes: 16,
            max_text: 8 << 20,
        }
    }
}

/// Why a document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML is not well-formed: {0}")]
    Syntax(String),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("unknown entity reference &{0};")]
    Entity(String),
    #[error("XML limit exceeded: {0}")]
    Limit(&'static str),
}

/// One element: name, attributes (unescaped), child elements and the
/// concatenated character data directly inside it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Attribute by exact name, falling back to a case-insensitive match.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| {
                self.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.as_str())
    }

    /// First child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Child elements named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn start_element(
    e: &BytesStart<'_>,
    limits: &Limits,
    text_budget: &mut usize,
) -> Result<Element, XmlError> {
    let name = AsRef::<str>::as_ref(&e.name()).to_string();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::Syntax(err.to_string()))?;
        if attrs.len() >= limits.max_attributes {
            return Err(XmlError::Limit("attributes per element"));
        }
        let key = AsRef::<str>::as_ref(&a.key).to_string();
        let value =
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| match err {
                    quick_xml::Error::Escape(
                        quick_xml::escape::EscapeError::UnrecognizedEntity(_, ent),
                    ) => XmlError::Entity(ent),
                    other => XmlError::Syntax(other.to_string()),
                })?;
        take_budget(text_budget, value.len())?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Element {
        name,
        attrs,
        ..Default::default()
    })
}

fn take_budget(budget: &mut usize, n: usize) -> Result<(), XmlError> {
    *budget = budget
        .checked_sub(n)
        .ok_or(XmlError::Limit("total text size"))?;
    Ok(())
}

fn resolve_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses `input` into its root element.
pub fn parse(input: &str, limits: &Limits) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(input);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut text_budget = limits.max_text;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(XmlError::Syntax("content after the root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::Limit("element count"));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::Limit("nesting depth"));
                }
                stack.push(start_element(&e, limits, &mut text_budget)?);
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return Err(XmlError::Syntax("content after the root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::Limit("element count"));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::Limit("nesting depth"));
                }
                let el = start_element(&e, limits, &mut text_budget)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                // quick-xml checks that end names match their start tags.
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unmatched end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                match stack.last_mut() {
                    Some(cur) => {
                        take_budget(&mut text_budget, s.len())?;
                        cur.text.push_str(&s);
                    }
                    None => {
                        if !s.trim().is_empty() {
                            return Err(XmlError::Syntax("text outside the root element".into()));
                        }
                    }
                }
            }
            Event::CData(c) => {
                let s = c.xml10_content();
                let cur = stack
                    .last_mut()
                    .ok_or_else(|| XmlError::Syntax("CDATA outside the root element".into()))?;
                take_budget(&mut text_budget, s.len())?;
                cur.text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| XmlError::Syntax(e.to_string()))?
                } else {
                    let name = r.xml10_content();
                    Some(
                        resolve_entity(&name)
                            .ok_or_else(|| XmlError::Entity(name.chars().take(32).collect()))?,
                    )
                };
                let ch = ch.ok_or_else(|| XmlError::Syntax("bad character reference".into()))?;
                let cur = stack
                    .last_mut()
                    .ok_or_else(|| XmlError::Syntax("reference outside the root element".into()))?;
                take_budget(&mut text_budget, ch.len_utf8())?;
                cur.text.push(ch);
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax("document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError::Syntax("no root element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_entities_and_attrs() {
        let el = parse(
            "<?xml version=\"1.0\"?><A x=\"1 &amp; 2\"><B>a &lt; b &#x41;</B><C/></A>",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(el.attr("x"), Some("1 & 2"));
        assert_eq!(el.child("B").unwrap().text, "a < b A");
        assert!(el.child("C").is_some());
    }

    #[test]
    fn refuses_doctype_entities_and_limits() {
        let l = Limits::default();
        assert_eq!(
            parse("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>", &l),
            Err(XmlError::Doctype)
        );
        assert!(matches!(parse("<x>&a;</x>", &l), Err(XmlError::Entity(_))));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(&deep, &l), Err(XmlError::Limit("nesting depth")));
        assert!(parse("<a><b></a>", &l).is_err());
        assert!(parse("<a></a><b/>", &l).is_err());
        assert!(parse("", &l).is_err());
        assert!(parse("<a", &l).is_err());
        let many = format!(
            "<a {}/>",
            (0..20)
                .map(|i| format!("k{i}=\"v\""))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(
            parse(&many, &l),
            Err(XmlError::Limit("attributes per element"))
        );
    }
}
