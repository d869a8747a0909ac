//! Method-override fields in form bodies: Rails, Laravel, Symfony and Express's
//! `method-override` read `_method` (and some `X-HTTP-Method-Override`) from a posted form, and
//! then run another method than the one authorized — a `POST` decided as `invoice:create` would
//! run as `DELETE`. The query string and the headers are checked in `canonical_path.rs`; this follows a
//! form body as it streams to the upstream, and stops it (400) before the field is passed on.
//! Only `application/x-www-form-urlencoded` and `multipart/form-data` bodies are looked at.

use http::{HeaderMap, header};
use memchr::memmem;

use crate::canonical_path::QUERY_OVERRIDES;

/// The longest form key kept for comparison; longer keys are none of the override names.
const MAX_KEY: usize = 32;

/// A form body being followed.
pub(crate) enum FormScan {
    /// `a=1&b=2`: keys percent-decoded as they arrive.
    Urlencoded(KeyScan),
    /// Parts with `Content-Disposition: form-data; name="…"`: the raw bytes searched for a part
    /// named like an override (the last bytes of each read kept, for a name cut in two).
    Multipart(Vec<u8>),
}

/// The urlencoded scanner's state.
#[derive(Default)]
pub(crate) struct KeyScan {
    /// The key so far, decoded and lowercase (at most `MAX_KEY` bytes).
    key: Vec<u8>,
    /// The key is longer than `MAX_KEY`.
    long: bool,
    /// In a value (until the next `&`).
    in_value: bool,
    /// Inside a percent-escape: the hex digits read so far.
    escape: Option<Vec<u8>>,
}

/// The multipart patterns of an override name: `name="_method"` and `name=_method`.
fn patterns(name: &str) -> [String; 2] {
    [format!("name=\"{name}\""), format!("name={name}")]
}

/// The longest multipart pattern, less one: what is kept between reads, for a name cut in two.
fn carry() -> usize {
    QUERY_OVERRIDES
        .iter()
        .flat_map(|name| patterns(name))
        .map(|pattern| pattern.len())
        .max()
        .unwrap_or(1)
        - 1
}

impl FormScan {
    /// The scanner for a request's body, when its `Content-Type` is a form.
    pub(crate) fn for_request(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = content_type.split(';').next()?.trim();
        if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(Self::Urlencoded(KeyScan::default()))
        } else if media.eq_ignore_ascii_case("multipart/form-data") {
            Some(Self::Multipart(Vec::new()))
        } else {
            None
        }
    }

    /// Follows the next bytes of the body; the override name when one is found.
    pub(crate) fn bytes(&mut self, data: &[u8]) -> Option<&'static str> {
        match self {
            Self::Urlencoded(scan) => data.iter().find_map(|byte| scan.byte(*byte)),
            Self::Multipart(tail) => {
                tail.extend(data.iter().map(u8::to_ascii_lowercase));
                let found = QUERY_OVERRIDES.iter().copied().find(|name| {
                    patterns(name)
                        .iter()
                        .any(|pattern| memmem::find(tail, pattern.as_bytes()).is_some())
                });
                let keep = carry().min(tail.len());
                tail.drain(..tail.len() - keep);
                found
            }
        }
    }

    /// The body ended: a last key without `=` counts too.
    pub(crate) fn end(&mut self) -> Option<&'static str> {
        match self {
            Self::Urlencoded(scan) if !scan.in_value => scan.end_key(),
            _ => None,
        }
    }
}

impl KeyScan {
    fn byte(&mut self, byte: u8) -> Option<&'static str> {
        if self.in_value {
            if byte == b'&' {
                self.in_value = false;
            }
            return None;
        }
        if let Some(digits) = &mut self.escape {
            digits.push(byte);
            if digits.len() < 2 {
                return None;
            }
            let decoded = std::str::from_utf8(digits)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let raw = std::mem::take(digits);
            self.escape = None;
            match decoded {
                Some(value) => self.push(value),
                None => {
                    self.push(b'%');
                    raw.into_iter().for_each(|b| self.push(b));
                }
            }
            return None;
        }
        match byte {
            b'=' => {
                let found = self.end_key();
                self.in_value = true;
                found
            }
            b'&' => self.end_key(),
            b'%' => {
                self.escape = Some(Vec::with_capacity(2));
                None
            }
            b'+' => {
                self.push(b' ');
                None
            }
            _ => {
                self.push(byte);
                None
            }
        }
    }

    fn push(&mut self, byte: u8) {
        if self.key.len() < MAX_KEY {
            self.key.push(byte.to_ascii_lowercase());
        } else {
            self.long = true;
        }
    }

    /// The key ended: is it an override name (spaces around it aside)?
    fn end_key(&mut self) -> Option<&'static str> {
        let found = if self.long {
            None
        } else {
            let key = String::from_utf8_lossy(&self.key);
            let key = key.trim();
            QUERY_OVERRIDES.iter().copied().find(|name| *name == key)
        };
        self.key.clear();
        self.long = false;
        self.escape = None;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(content_type: &str, body: &[u8], piece: usize) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        let mut form = FormScan::for_request(&headers)?;
        for part in body.chunks(piece.max(1)) {
            if let Some(found) = form.bytes(part) {
                return Some(found);
            }
        }
        form.end()
    }

    const FORM: &str = "application/x-www-form-urlencoded";
    const MULTIPART: &str = "multipart/form-data; boundary=XyZ";

    #[test]
    fn override_fields_are_found_however_the_body_is_cut() {
        for piece in [1, 2, 3, 7, 1000] {
            for body in [
                "_method=DELETE",
                "a=1&_method=delete",
                "a=1&%5Fmethod=PUT",
                "a=1&%5fMETHOD=PUT",
                "a=1&+_method+=PUT",
                "x-http-method-override=DELETE&b=2",
                "a=1&_method",
            ] {
                assert!(
                    scan(FORM, body.as_bytes(), piece).is_some(),
                    "{body} in {piece}"
                );
            }
            let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n";
            assert_eq!(
                scan(MULTIPART, multipart.as_bytes(), piece),
                Some("_method")
            );
            let unquoted = "--XyZ\r\nContent-Disposition: form-data; NAME=_Method\r\n\r\nPUT\r\n";
            assert!(scan(MULTIPART, unquoted.as_bytes(), piece).is_some());
        }
    }

    #[test]
    fn other_forms_and_bodies_pass() {
        for body in [
            "method=DELETE",
            "a=_method&b=1",
            "_methods=1",
            "x_method=1",
            "note=100%25",
        ] {
            assert_eq!(scan(FORM, body.as_bytes(), 3), None, "{body}");
        }
        let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n_method\r\n--XyZ--\r\n";
        assert_eq!(scan(MULTIPART, multipart.as_bytes(), 5), None);
        assert_eq!(
            scan("application/json", b"{\"_method\":\"DELETE\"}", 4),
            None
        );
    }

    proptest::proptest! {
        /// However a form body is cut into reads, the same verdict, for any bytes.
        #[test]
        fn cutting_changes_nothing(
            body in proptest::collection::vec(
                proptest::sample::select(b"_method=&%5FfMx+ -\r\nname\"".to_vec()),
                0..80,
            ),
            piece in 1usize..20,
            multipart in proptest::bool::ANY,
        ) {
            let kind = if multipart { MULTIPART } else { FORM };
            proptest::prop_assert_eq!(scan(kind, &body, piece), scan(kind, &body, usize::MAX));
        }
    }
}
