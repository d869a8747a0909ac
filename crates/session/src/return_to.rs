//! Where a browser goes after its login: only ever a path on the gateway's own origin, so the
//! login cannot be used to send someone to another site (an open redirect).

/// The longest return path kept.
const MAX_RETURN: usize = 2048;

/// `target` when it is a same-origin path (`/…`, not `//…` nor `/\…`, no scheme, no control
/// characters or backslashes, not one of the gateway's own paths); otherwise `/`.
pub fn same_origin_path(target: &str) -> String {
    let safe = target.starts_with('/')
        && !target.starts_with("//")
        && target.len() <= MAX_RETURN
        && !target.contains('\\')
        && !target.chars().any(|c| c.is_control() || c.is_whitespace())
        && !target.starts_with("/.invoiceguard/")
        && !decoded_is_unsafe(target);
    if safe {
        target.to_owned()
    } else {
        "/".to_owned()
    }
}

/// Whether the percent-decoded path starts like another origin (`/%2F…`, `/%5C…`).
fn decoded_is_unsafe(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    lower.starts_with("/%2f")
        || lower.starts_with("/%5c")
        || lower.contains("%0d")
        || lower.contains("%0a")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_same_origin_paths_are_returned_to() {
        assert_eq!(
            same_origin_path("/invoices?status=open"),
            "/invoices?status=open"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/%2Fevil.example",
            "/%5cevil.example",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=1",
            "/.invoiceguard/callback?code=x",
            "",
            "evil",
        ] {
            assert_eq!(same_origin_path(bad), "/", "{bad}");
        }
    }

    proptest! {
        #[test]
        fn whatever_comes_in_a_relative_path_on_this_origin_goes_out(target in ".{0,64}") {
            let path = same_origin_path(&target);
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.starts_with("//"));
            prop_assert!(!path.contains('\\'));
            prop_assert!(!path.chars().any(char::is_control));
        }
    }
}
