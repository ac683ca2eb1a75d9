//! Where one recipient goes: the route trivial-rewrite (or a content filter) gave it, the
//! overrides the queue manager applies, and the names of the queues it lands in.

use std::cmp::Ordering;

use crate::proto::recipient::Recipient;
use crate::proto::rewrite::resolve_flags;

/// A recipient's route: transport, next hop, (possibly rewritten) address, resolve flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub transport: Vec<u8>,
    pub nexthop: Vec<u8>,
    pub address: Vec<u8>,
    pub flags: u32,
}

impl Route {
    /// Sends the recipient to `error` or `retry` with `"<dsn> <reason>"` as next hop.
    pub fn redirect(&mut self, transport: &[u8], nexthop: &[u8]) {
        self.flags = 0;
        self.transport = transport.to_vec();
        self.nexthop = nexthop.to_vec();
    }

    /// The resolver's own verdicts: a failed lookup is retried later, bad syntax bounces.
    pub fn apply_resolver_flags(&mut self) {
        if self.flags & resolve_flags::FAIL != 0 {
            self.redirect(b"retry", b"4.3.0 address resolver failure");
        } else if self.flags & resolve_flags::ERROR != 0 {
            self.redirect(b"error", b"5.1.3 bad address syntax");
        }
    }

    /// A local recipient whose local part is double_bounce_sender: mail to it is discarded.
    pub fn is_double_bounce(&self, double_bounce_sender: &[u8]) -> bool {
        self.flags & resolve_flags::CLASS_LOCAL != 0
            && local_part(&self.address).eq_ignore_ascii_case(double_bounce_sender)
    }

    /// The route for a message with a content filter (`transport:nexthop`): no resolver call.
    /// Without a next hop: default_filter_nexthop, else the recipient domain, else myhostname.
    pub fn for_filter(
        filter: &[u8],
        address: &[u8],
        default_filter_nexthop: &[u8],
        myhostname: &[u8],
    ) -> Route {
        let (transport, nexthop) = match memchr::memchr(b':', filter) {
            Some(i) => (&filter[..i], &filter[i + 1..]),
            None => (filter, &b""[..]),
        };
        let nexthop = if !nexthop.is_empty() {
            nexthop
        } else if !default_filter_nexthop.is_empty() {
            default_filter_nexthop
        } else {
            match domain(address) {
                Some(d) if !d.is_empty() => d,
                _ => myhostname,
            }
        };
        Route {
            transport: transport.to_vec(),
            nexthop: nexthop.to_vec(),
            address: address.to_vec(),
            flags: 0,
        }
    }
}

/// The address up to its last `@` (the local part qmgr_message_assign keys on).
pub fn local_part(address: &[u8]) -> &[u8] {
    match memchr::memrchr(b'@', address) {
        Some(i) => &address[..i],
        None => address,
    }
}

/// The address after its last `@`, if it has one (the domain the recipient sort keys on).
pub fn domain(address: &[u8]) -> Option<&[u8]> {
    memchr::memrchr(b'@', address).map(|i| &address[i + 1..])
}

/// The extension-free local part (Postfix's split_addr): cut at the first delimiter character,
/// except for postmaster, MAILER-DAEMON, the double-bounce address, and (when `-` is a
/// delimiter and owner_request_special is on) owner-* and *-request; never to an empty part.
pub fn strip_extension<'a>(
    local: &'a [u8],
    delimiters: &[u8],
    double_bounce_sender: &[u8],
    owner_request_special: bool,
) -> &'a [u8] {
    if delimiters.is_empty()
        || local.eq_ignore_ascii_case(b"postmaster")
        || local.eq_ignore_ascii_case(b"MAILER-DAEMON")
        || local.eq_ignore_ascii_case(double_bounce_sender)
    {
        return local;
    }
    if delimiters.contains(&b'-') && owner_request_special {
        let lower = local.to_ascii_lowercase();
        if lower.starts_with(b"owner-") || (lower.len() > 8 && lower.ends_with(b"-request")) {
            return local;
        }
    }
    match local.iter().position(|c| delimiters.contains(c)) {
        Some(0) | None => local,
        Some(i) => &local[..i],
    }
}

/// The destination queue's name: the next hop, or for transports that deliver one recipient
/// at a time (other than error/retry) `user@nexthop`, so that each mailbox gets its own
/// concurrency window. Lower-cased (qmgr_message_assign's queue name).
pub fn queue_name(
    transport: &[u8],
    recipient_limit: i32,
    nexthop: &[u8],
    address: &[u8],
    delimiters: &[u8],
    double_bounce_sender: &[u8],
    owner_request_special: bool,
) -> Vec<u8> {
    let mut name = if transport != b"error" && transport != b"retry" && recipient_limit == 1 {
        let user = strip_extension(
            local_part(address),
            delimiters,
            double_bounce_sender,
            owner_request_special,
        );
        let mut n = user.to_vec();
        n.push(b'@');
        n.extend_from_slice(nexthop);
        n
    } else {
        nexthop.to_vec()
    };
    name.make_ascii_lowercase();
    name
}

/// Recipient order within a destination: by domain (addresses without `@` last), then by the
/// whole address, both case-insensitively (qmgr_message_sort_compare).
pub fn compare_addresses(a: &[u8], b: &[u8]) -> Ordering {
    let ci = |x: &[u8], y: &[u8]| {
        x.iter()
            .map(u8::to_ascii_lowercase)
            .cmp(y.iter().map(u8::to_ascii_lowercase))
    };
    let at = |x: &[u8]| memchr::memrchr(b'@', x).map(|i| x[i..].to_vec());
    match (at(a), at(b)) {
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(da), Some(db)) => ci(&da, &db).then_with(|| ci(a, b)),
        (None, None) => ci(a, b),
    }
}

/// The VERP sender for one recipient: `prefix@origin` becomes
/// `prefix<d1>user<d2>domain@origin`, using the original recipient when there is one
/// (Postfix's verp_sender).
pub fn verp_sender(delimiters: &[u8], sender: &[u8], recipient: &Recipient) -> Vec<u8> {
    let rcpt = if recipient.original().is_empty() {
        &recipient.address()
    } else {
        &recipient.original()
    };
    let (s_local, s_domain) = match memchr::memrchr(b'@', sender) {
        Some(i) => (&sender[..i], &sender[i + 1..]),
        None => (sender, &b""[..]),
    };
    let (r_local, r_domain) = match memchr::memrchr(b'@', rcpt) {
        Some(i) => (&rcpt[..i], &rcpt[i + 1..]),
        None => (&rcpt[..], &b""[..]),
    };
    let mut out = s_local.to_vec();
    out.push(delimiters.first().copied().unwrap_or(b'+'));
    out.extend_from_slice(r_local);
    if !r_domain.is_empty() {
        out.push(delimiters.get(1).copied().unwrap_or(b'='));
        out.extend_from_slice(r_domain);
    }
    if !s_domain.is_empty() {
        out.push(b'@');
        out.extend_from_slice(s_domain);
    }
    out
}

/// An RFC 3463 status code `[245].d{1,3}.d{1,3}` (optionally followed by white space), as
/// Postfix's dsn_valid.
pub fn dsn_valid(status: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
    let [class, b'.', rest @ ..] = status else {
        return false;
    };
    if !matches!(class, b'2' | b'4' | b'5') {
        return false;
    }
    let n = digits(rest);
    if !(1..=3).contains(&n) || rest.get(n) != Some(&b'.') {
        return false;
    }
    let rest = &rest[n + 1..];
    let m = digits(rest);
    (1..=3).contains(&m) && rest.get(m).is_none_or(|c| c.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(address: &str, original: &str) -> Recipient {
        Recipient::new(original.as_bytes(), address.as_bytes(), 0, b"", 0)
    }

    #[test]
    fn verp_senders_match_the_capture() {
        let r = rcpt("v1@d1.lab", "v1@d1.lab");
        assert_eq!(
            verp_sender(b"+=", b"sender@src.lab", &r),
            b"sender+v1=d1.lab@src.lab"
        );
        let r = rcpt("x@y", "");
        assert_eq!(verp_sender(b"+=", b"owner", &r), b"owner+x=y");
    }

    #[test]
    fn resolver_verdicts() {
        let mut r = Route {
            transport: b"smtp".to_vec(),
            nexthop: b"x".to_vec(),
            address: b"a@x".to_vec(),
            flags: resolve_flags::FAIL | resolve_flags::ERROR,
        };
        r.apply_resolver_flags();
        assert_eq!(r.transport, b"retry");
        assert_eq!(r.nexthop, b"4.3.0 address resolver failure");
        let mut r2 = Route {
            flags: resolve_flags::ERROR,
            ..r.clone()
        };
        r2.apply_resolver_flags();
        assert_eq!(r2.transport, b"error");
        assert_eq!(r2.flags, 0);
    }

    #[test]
    fn filter_nexthop_fallbacks() {
        let r = Route::for_filter(b"scan:[127.0.0.1]:10025", b"a@b", b"", b"me");
        assert_eq!(
            (r.transport.as_slice(), r.nexthop.as_slice()),
            (&b"scan"[..], &b"[127.0.0.1]:10025"[..])
        );
        assert_eq!(
            Route::for_filter(b"scan", b"a@b.lab", b"", b"me").nexthop,
            b"b.lab"
        );
        assert_eq!(Route::for_filter(b"scan:", b"a", b"", b"me").nexthop, b"me");
        assert_eq!(
            Route::for_filter(b"scan", b"a@b", b"dflt", b"me").nexthop,
            b"dflt"
        );
    }

    #[test]
    fn per_recipient_queues_for_limit_one_transports() {
        let q = |t: &[u8], limit, addr: &[u8]| {
            queue_name(
                t,
                limit,
                b"Example.COM",
                addr,
                b"+-",
                b"double-bounce",
                true,
            )
        };
        assert_eq!(q(b"local", 1, b"Joe+foo@example.com"), b"joe@example.com");
        assert_eq!(q(b"local", 1, b"owner-list@x"), b"owner-list@example.com");
        assert_eq!(
            q(b"local", 1, b"list-request@x"),
            b"list-request@example.com"
        );
        assert_eq!(q(b"local", 1, b"+x@x"), b"+x@example.com");
        assert_eq!(q(b"smtp", 50, b"joe@x"), b"example.com");
        assert_eq!(q(b"retry", 1, b"joe@x"), b"example.com");
    }

    #[test]
    fn address_order_is_domain_then_address() {
        let mut v: Vec<&[u8]> = vec![b"b@Y", b"nodomain", b"a@y", b"c@x"];
        v.sort_by(|a, b| compare_addresses(a, b));
        assert_eq!(v, vec![&b"c@x"[..], b"a@y", b"b@Y", b"nodomain"]);
    }

    #[test]
    fn dsn_codes() {
        assert!(dsn_valid(b"4.4.1"));
        assert!(dsn_valid(b"5.123.999"));
        assert!(dsn_valid(b"2.0.0 ok"));
        assert!(!dsn_valid(b"3.0.0"));
        assert!(!dsn_valid(b"4.1234.1"));
        assert!(!dsn_valid(b"4.4."));
        assert!(!dsn_valid(b""));
    }
}
