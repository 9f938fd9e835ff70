//! Where a value sits in a document: the JSON Pointer of a violation, built only when one
//! is recorded.

/// Where a value sits in a document, as a chain of segments kept on the stack.
///
/// Validators pass a `Location` down while walking; the JSON Pointer string is only
/// built when a violation is recorded, so validating a valid document allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    parent: Option<&'a Location<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Location<'a> {
    /// The document itself.
    pub const ROOT: Location<'static> = Location {
        parent: None,
        segment: Segment::Root,
    };

    /// The member `key` of the object here.
    #[must_use]
    pub fn key(&'a self, key: &'a str) -> Location<'a> {
        Location {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    /// The element `index` of the array here.
    #[must_use]
    pub fn index(&'a self, index: usize) -> Location<'a> {
        Location {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    /// The JSON Pointer of this location (`~` and `/` escaped as RFC 6901 says).
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        self.write_pointer(&mut out);
        out
    }

    fn write_pointer(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.write_pointer(out);
        }
        match self.segment {
            Segment::Root => {}
            Segment::Key(key) => push_key(out, key),
            Segment::Index(i) => {
                out.push('/');
                out.push_str(&i.to_string());
            }
        }
    }
}

/// Appends `/key` to a JSON Pointer, escaping `~` and `/` (RFC 6901).
pub(crate) fn push_key(out: &mut String, key: &str) {
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}
