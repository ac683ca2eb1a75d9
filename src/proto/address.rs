//! Internal and external (RFC 822 quoted) forms of an address: Postfix keeps addresses
//! unquoted inside, quotes them for log lines (`info_log_address_format = external`) and for
//! trivial-rewrite's `rewrite` requests, and unquotes the answers.

/// Whether `local` (the part before the domain) is a dot-string that needs no quotes. 8-bit
/// bytes pass as they are (Postfix's default 8-bit-clean quoting).
fn is_dot_string(local: &[u8]) -> bool {
    if local.is_empty() || local[0] == b'.' || local.last() == Some(&b'.') {
        return false;
    }
    if local.windows(2).any(|w| w == b"..") {
        return false;
    }
    !local
        .iter()
        .any(|&c| c <= b' ' || c == 0x7f || b"()<>@,;:\\\"[]".contains(&c))
}

/// The route prefix (`@a,@b:`) and where the local part starts.
fn route_split(mbox: &[u8]) -> usize {
    if mbox.first() == Some(&b'@') {
        if let Some(colon) = memchr::memchr(b':', mbox) {
            return colon + 1;
        }
    }
    0
}

/// Postfix's quote_822_local: `john doe@x` becomes `"john doe"@x`; a plain address is
/// returned unchanged.
pub fn quote_822_local(mbox: &[u8]) -> Vec<u8> {
    let start = route_split(mbox);
    let rest = &mbox[start..];
    let end = start + memchr::memrchr(b'@', rest).unwrap_or(rest.len());
    let local = &mbox[start..end];
    if is_dot_string(local) {
        return mbox.to_vec();
    }
    let mut out = Vec::with_capacity(mbox.len() + 4);
    out.extend_from_slice(&mbox[..start]);
    out.push(b'"');
    for &c in local {
        if c == b'"' || c == b'\\' || c == b'\r' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out.extend_from_slice(&mbox[end..]);
    out
}

/// Postfix's unquote_822_local: quotes and backslash escapes are removed from the local part;
/// the text after the last unquoted `@` is kept as it is.
pub fn unquote_822_local(mbox: &[u8]) -> Vec<u8> {
    let start = route_split(mbox);
    let mut out = mbox[..start].to_vec();
    let mut in_quote = false;
    let mut bare_at: Option<(usize, usize)> = None;
    let mut i = start;
    while i < mbox.len() {
        let c = mbox[i];
        if c == b'"' {
            in_quote = !in_quote;
            i += 1;
            continue;
        }
        if c == b'@' && !in_quote {
            bare_at = Some((out.len(), i));
        } else if c == b'\\' {
            if i + 1 >= mbox.len() {
                i += 1;
                continue;
            }
            i += 1;
        }
        out.push(mbox[i]);
        i += 1;
    }
    if let Some((dst, src)) = bare_at {
        out.truncate(dst);
        out.extend_from_slice(&mbox[src..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_addresses_are_left_alone() {
        assert_eq!(quote_822_local(b"user@example.com"), b"user@example.com");
        assert_eq!(quote_822_local(b"first.last+tag@x"), b"first.last+tag@x");
        assert_eq!(quote_822_local("jörg@x".as_bytes()), "jörg@x".as_bytes());
    }

    #[test]
    fn odd_local_parts_are_quoted() {
        assert_eq!(quote_822_local(b"john doe@x"), b"\"john doe\"@x");
        assert_eq!(quote_822_local(b"a..b@x"), b"\"a..b\"@x");
        assert_eq!(quote_822_local(b".a@x"), b"\".a\"@x");
        assert_eq!(quote_822_local(b"a\"b@x"), b"\"a\\\"b\"@x");
        assert_eq!(quote_822_local(b"a@b@x"), b"\"a@b\"@x");
        assert_eq!(quote_822_local(b"@r1,@r2:a b@x"), b"@r1,@r2:\"a b\"@x");
        assert_eq!(quote_822_local(b""), b"\"\"");
    }

    #[test]
    fn unquoting_undoes_quoting() {
        assert_eq!(unquote_822_local(b"\"john doe\"@x"), b"john doe@x");
        assert_eq!(unquote_822_local(b"\"a\\\"b\"@x"), b"a\"b@x");
        assert_eq!(unquote_822_local(b"\"a@b\"@x"), b"a@b@x");
    }

    proptest! {
        #[test]
        fn round_trip(local in "[ -~]{1,20}", domain in "[a-z]{1,8}") {
            let addr = format!("{local}@{domain}");
            let quoted = quote_822_local(addr.as_bytes());
            prop_assert_eq!(unquote_822_local(&quoted), addr.as_bytes().to_vec());
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = unquote_822_local(&quote_822_local(&b));
        }
    }
}
