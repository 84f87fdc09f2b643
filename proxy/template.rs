//! Path templates: `/courses/{school}/{title}`, `/courses/{id*}/manual_update`.
//!
//! The vocabulary routes, hints and job keys share (templates, captured params), kept apart
//! from the route table so that features can name it without depending on routing.
//!
//! A template is a list of segments. A literal segment matches itself, `{name}` matches one
//! segment, `{name*}` matches one or more segments (it may stand anywhere, not only last);
//! as the last segment it also matches none, so `/{rest*}` is a catch-all that includes `/`
//! and `/assets/{file*}` includes `/assets`.
//! Matching works on the path's non-empty segments, so `//a/` and `/a` are the same path
//! (nginx's `merge_slashes on`); the query string is never part of the match.

use std::fmt;
use std::sync::Arc;

/// One segment of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: one segment.
    Param(Arc<str>),
    /// `{name*}`: one or more segments; zero as well when it is the last segment.
    Glob(Arc<str>),
}

/// A compiled path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
}

/// Why a template does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Templates are absolute paths.
    #[error("a path template must start with `/`")]
    NotAbsolute,
    /// `/a//b`
    #[error("empty segment (`//`) in the template")]
    EmptySegment,
    /// `/a{b}` or `/{a}b`: parameters are whole segments.
    #[error("`{0}`: a parameter must be a whole segment, like `{{name}}` or `{{name*}}`")]
    PartialParam(String),
    /// `{}` or `{1x}`
    #[error("`{0}`: parameter names are letters, digits and `_`, not starting with a digit")]
    BadParamName(String),
    /// `/{a}/{a}`
    #[error("parameter `{0}` appears twice")]
    DuplicateParam(String),
}

/// Values captured by a match, in template order; a glob's value is its segments joined by `/`.
pub type Params = Vec<(Arc<str>, String)>;

impl PathTemplate {
    /// Compiles `source`.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let rest = source.strip_prefix('/').ok_or(TemplateError::NotAbsolute)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for part in rest.split('/') {
                segments.push(parse_segment(part)?);
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for segment in &segments {
            if let Segment::Param(name) | Segment::Glob(name) = segment {
                if names.contains(&name.as_ref()) {
                    return Err(TemplateError::DuplicateParam(name.to_string()));
                }
                names.push(name);
            }
        }
        Ok(PathTemplate {
            source: source.to_string(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the template names parameter `name`.
    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(n) | Segment::Glob(n) if n.as_ref() == name))
    }

    /// Matches the path's segments, returning the captured parameters. A glob takes the
    /// shortest span that lets the rest of the template match. Linear in the path's length
    /// whatever the template: the path is the client's.
    pub fn matches(&self, path: &[&str]) -> Option<Params> {
        let reach = reachable(&self.segments, path);
        if !reach.first().is_some_and(|row| row[0]) {
            return None;
        }
        let mut params = Params::new();
        let mut at = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let next = &reach[i + 1];
            match segment {
                Segment::Literal(_) => at += 1,
                Segment::Param(name) => {
                    params.push((name.clone(), path[at].to_string()));
                    at += 1;
                }
                Segment::Glob(name) => {
                    let min_take = usize::from(i + 1 < self.segments.len());
                    let take = (min_take..=path.len() - at).find(|take| next[at + take])?;
                    params.push((name.clone(), path[at..at + take].join("/")));
                    at += take;
                }
            }
        }
        Some(params)
    }

    /// Counts of (literal, param, glob) segments: the specificity the route table sorts by.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.segments
            .iter()
            .fold((0, 0, 0), |(l, p, g), s| match s {
                Segment::Literal(_) => (l + 1, p, g),
                Segment::Param(_) => (l, p + 1, g),
                Segment::Glob(_) => (l, p, g + 1),
            })
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Splits a request path (no query) into its non-empty segments.
pub fn path_segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn parse_segment(part: &str) -> Result<Segment, TemplateError> {
    if part.is_empty() {
        return Err(TemplateError::EmptySegment);
    }
    let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
        if part.contains(['{', '}']) {
            return Err(TemplateError::PartialParam(part.to_string()));
        }
        return Ok(Segment::Literal(part.to_string()));
    };
    let (name, glob) = match inner.strip_suffix('*') {
        Some(name) => (name, true),
        None => (inner, false),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(TemplateError::BadParamName(part.to_string()));
    }
    let name: Arc<str> = Arc::from(name);
    Ok(if glob {
        Segment::Glob(name)
    } else {
        Segment::Param(name)
    })
}

/// `reach[i][j]`: whether `template[i..]` matches `path[j..]`, filled from the end so that a
/// glob costs one pass over the path (a suffix OR), not a try per span. The backtracking
/// search this replaces joined a candidate capture per try: a template with a glob in the
/// middle (`/courses/{id*}/manual_update`) against a path of many segments was quadratic,
/// seconds of CPU for one 32 KB request line.
fn reachable(template: &[Segment], path: &[&str]) -> Vec<Vec<bool>> {
    let (t, p) = (template.len(), path.len());
    let mut reach = vec![vec![false; p + 1]; t + 1];
    reach[t][p] = true;
    for i in (0..t).rev() {
        let (head, tail) = reach.split_at_mut(i + 1);
        let (row, next) = (&mut head[i], &tail[0]);
        match &template[i] {
            Segment::Literal(text) => {
                for ((cell, segment), after) in row.iter_mut().zip(path).zip(&next[1..]) {
                    *cell = *segment == text.as_str() && *after;
                }
            }
            Segment::Param(_) => row[..p].copy_from_slice(&next[1..]),
            Segment::Glob(_) => {
                // One segment at least, unless the glob ends the template.
                let min_take = usize::from(i + 1 < t);
                let mut any = false;
                for j in (0..=p).rev() {
                    any |= next.get(j + min_take).copied().unwrap_or(false);
                    row[j] = any;
                }
            }
        }
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<&str> {
        path_segments(path).collect()
    }

    fn capture(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        let t = PathTemplate::parse(template).ok()?;
        t.matches(&segs(path))
            .map(|p| p.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    #[test]
    fn params_capture_one_segment_each() {
        assert_eq!(
            capture("/courses/{school}/{title}", "/courses/mit/physics"),
            Some(vec![
                ("school".into(), "mit".into()),
                ("title".into(), "physics".into())
            ])
        );
        assert_eq!(capture("/courses/{school}/{title}", "/courses/mit"), None);
        assert_eq!(
            capture("/courses/{school}/{title}", "/courses/mit/a/b"),
            None
        );
    }

    #[test]
    fn glob_in_the_middle_takes_one_or_more_segments() {
        assert_eq!(
            capture("/courses/{id*}/manual_update", "/courses/a/b/manual_update"),
            Some(vec![("id".into(), "a/b".into())])
        );
        assert_eq!(
            capture("/courses/{id*}/manual_update", "/courses/manual_update"),
            None
        );
        assert_eq!(
            capture("/assets/{rest*}", "/assets/x/y.js"),
            Some(vec![("rest".into(), "x/y.js".into())])
        );
    }

    #[test]
    fn a_final_glob_also_matches_nothing() {
        assert_eq!(
            capture("/{rest*}", "/"),
            Some(vec![("rest".into(), "".into())])
        );
        assert_eq!(
            capture("/assets/{rest*}", "/assets"),
            Some(vec![("rest".into(), "".into())])
        );
        assert_eq!(capture("/{a*}/x/{b*}", "/x"), None);
    }

    #[test]
    fn root_and_slashes_are_normalised() {
        assert_eq!(capture("/", "/"), Some(vec![]));
        assert_eq!(capture("/", "//"), Some(vec![]));
        assert_eq!(capture("/training/", "/training"), Some(vec![]));
        assert_eq!(capture("/training", "//training/"), Some(vec![]));
    }

    #[test]
    fn bad_templates_say_why() {
        assert_eq!(
            PathTemplate::parse("courses"),
            Err(TemplateError::NotAbsolute)
        );
        assert_eq!(
            PathTemplate::parse("/a//b"),
            Err(TemplateError::EmptySegment)
        );
        assert!(matches!(
            PathTemplate::parse("/a{b}"),
            Err(TemplateError::PartialParam(_))
        ));
        assert!(matches!(
            PathTemplate::parse("/{1b}"),
            Err(TemplateError::BadParamName(_))
        ));
        assert!(matches!(
            PathTemplate::parse("/{}"),
            Err(TemplateError::BadParamName(_))
        ));
        assert!(matches!(
            PathTemplate::parse("/{a}/{a*}"),
            Err(TemplateError::DuplicateParam(_))
        ));
    }
}
