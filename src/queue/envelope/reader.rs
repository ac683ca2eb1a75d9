//! The record loop of qmgr_message_read(): the envelope and recipient batches.

use std::io::{Read, Seek};

use super::diagnostics::{seek_failed, ReadError, ReadEvent, Rejection, Warning};
use super::legacy::legacy_scan;
use super::types::{
    ArrivalTime, Envelope, Opened, RareFields, Recipient, RequestAttrs, WarnRecord,
    DEL_REQ_FLAG_RECORD, DEL_REQ_FLAG_REC_DLY_SENT, DEL_REQ_TRACE_FLAGS_MASK, DSN_NOTIFY_DELAY,
    DSN_NOTIFY_FAILURE, DSN_NOTIFY_NEVER, DSN_NOTIFY_SUCCESS, DSN_RET_FULL, DSN_RET_HDRS,
};
use crate::queue::record::{
    c_atoi, c_atol, c_string, is_c_space, parse_size_record, parse_warn_time, PointerError,
    PointerFollower, RecordReader, SizeParse, SizeRecord, ENVELOPE_TYPES, EXTRACTED_TYPES,
    QMGR_READ_FLAG_MIXED_RCPT_OTHER, QMGR_READ_FLAG_USER, REC_TYPE_ATTR, REC_TYPE_CTIME,
    REC_TYPE_DONE, REC_TYPE_DRCP, REC_TYPE_DSN_ENVID, REC_TYPE_DSN_NOTIFY, REC_TYPE_DSN_ORCPT,
    REC_TYPE_DSN_RET, REC_TYPE_END, REC_TYPE_FILT, REC_TYPE_FROM, REC_TYPE_INSP, REC_TYPE_ORCP,
    REC_TYPE_PTR, REC_TYPE_RCPT, REC_TYPE_RDR, REC_TYPE_SIZE, REC_TYPE_TIME, REC_TYPE_VERP,
    REC_TYPE_WARN, REC_TYPE_XTRA,
};

/// What the caller's configuration contributes to reading.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// In-memory recipients per batch; see [`recipient_cap`]. 0 behaves like 1.
    pub recipient_cap: usize,
    /// `verp_delimiter_filter` (default `-=+`).
    pub verp_delimiter_filter: &'a [u8],
    /// `confirm_delay_cleared`.
    pub confirm_delay_cleared: bool,
}

/// The batch size qmgr uses: the smallest count `n` with
/// `n >= qmgr_message_recipient_limit * (qmgr_fudge_factor / 100.0)`.
pub fn recipient_cap(recipient_limit: i64, fudge_factor: i64) -> usize {
    let cap = (recipient_limit as f64) * (fudge_factor as f64 / 100.0);
    if cap.is_nan() || cap <= 0.0 {
        0
    } else {
        cap.ceil().min(usize::MAX as f64) as usize
    }
}

/// In-progress state, with C's "not yet seen" as `None`.
#[derive(Default)]
struct Draft {
    size: Option<SizeRecord>,
    seen_all_non_rcpt: bool,
    arrival: ArrivalTime,
    create_time: i64,
    sender: Option<Vec<u8>>,
    recipients: Vec<Recipient>,
    resume_offset: Option<u64>,
    filter: Option<Vec<u8>>,
    inspect: Option<Vec<u8>>,
    redirect: Option<Vec<u8>>,
    verp: Option<Vec<u8>>,
    warn: Option<WarnRecord>,
    trace_flags: i32,
    trace_flags_offset: Option<u64>,
    dsn_envid: Option<Vec<u8>>,
    dsn_ret: i32,
    encoding: Option<Vec<u8>>,
    client_name: Option<Vec<u8>>,
    client_addr: Option<Vec<u8>>,
    client_port: Option<Vec<u8>>,
    client_proto: Option<Vec<u8>>,
    client_helo: Option<Vec<u8>>,
    sasl_method: Option<Vec<u8>>,
    sasl_username: Option<Vec<u8>>,
    sasl_sender: Option<Vec<u8>>,
    log_ident: Option<Vec<u8>>,
    rewrite_context: Option<Vec<u8>>,
    events: Vec<ReadEvent>,
}

impl Draft {
    /// Where a client attribute goes, by its pre-2.3 name (`client_name`, ...).
    fn client_slot(&mut self, legacy_name: &[u8]) -> Option<&mut Option<Vec<u8>>> {
        match legacy_name {
            b"client_name" => Some(&mut self.client_name),
            b"client_address" => Some(&mut self.client_addr),
            b"client_port" => Some(&mut self.client_port),
            b"protocol_name" => Some(&mut self.client_proto),
            b"helo_name" => Some(&mut self.client_helo),
            _ => None,
        }
    }

    fn data_offset(&self) -> i64 {
        self.size.map_or(0, |s| s.data_offset)
    }
    fn data_size(&self) -> i64 {
        self.size.map_or(0, |s| s.data_size)
    }
    fn read_flags(&self) -> i32 {
        self.size
            .map_or(QMGR_READ_FLAG_MIXED_RCPT_OTHER, |s| s.qmgr_flags)
    }
    fn warn(&mut self, w: Warning) {
        self.events.push(ReadEvent::Warning(w));
    }
}

/// Read a queue file from its start: all non-recipient information and the first batch of
/// recipients. The file should be opened read-write and locked by the caller, and be at its
/// start (as just opened: its position is not asked, which saves a system call per message).
pub fn read_envelope<R: Read + Seek>(
    file: &mut R,
    options: &ReadOptions<'_>,
) -> Result<Envelope, ReadError> {
    let mut draft = Draft::default();
    let outcome = read_records(file, &mut draft, options, 0, Some(0));
    // The batch stays in memory until routed: no room for the pushes that did not come.
    draft.recipients.shrink_to_fit();
    if let Err(rejection) = outcome {
        return Err(ReadError {
            rejection,
            events: draft.events,
        });
    }
    let fail = |rejection, draft: Draft| {
        Err(ReadError {
            rejection,
            events: draft.events,
        })
    };
    if draft.arrival.sec == 0 {
        return fail(Rejection::MissingArrivalTime, draft);
    }
    let Some(sender) = draft.sender.take() else {
        return fail(Rejection::MissingSender, draft);
    };
    let size = match draft.size {
        Some(size) if size.data_offset != 0 => size,
        _ => return fail(Rejection::MissingSizeRecord, draft),
    };
    let mut trace_flags = draft.trace_flags;
    if options.confirm_delay_cleared && draft.warn.is_some_and(|w| w.time < 0) {
        trace_flags |= DEL_REQ_FLAG_REC_DLY_SENT;
    }
    Ok(Envelope {
        size,
        arrival_time: draft.arrival,
        create_time: if draft.create_time == 0 {
            draft.arrival.sec
        } else {
            draft.create_time
        },
        sender: sender.into_boxed_slice(),
        recipients: draft.recipients,
        resume_offset: draft.resume_offset,
        rare: RareFields {
            filter_transport: draft.filter.map(Vec::into_boxed_slice),
            inspect_transport: draft.inspect.map(Vec::into_boxed_slice),
            redirect_address: draft.redirect.map(Vec::into_boxed_slice),
            verp_delimiters: draft.verp.map(Vec::into_boxed_slice),
        }
        .boxed(),
        warn: draft.warn,
        trace_flags,
        trace_flags_offset: draft.trace_flags_offset,
        dsn_ret: draft.dsn_ret,
        smtputf8: size.smtputf8,
        attrs: RequestAttrs::new([
            &draft.client_name.unwrap_or_default(),
            &draft.client_addr.unwrap_or_default(),
            &draft.client_port.unwrap_or_default(),
            &draft.client_proto.unwrap_or_default(),
            &draft.client_helo.unwrap_or_default(),
            &draft.sasl_method.unwrap_or_default(),
            &draft.sasl_username.unwrap_or_default(),
            &draft.sasl_sender.unwrap_or_default(),
            &draft.log_ident.unwrap_or_default(),
            &draft.rewrite_context.unwrap_or_else(|| b"local".to_vec()),
            &draft.encoding.unwrap_or_default(),
            &draft.dsn_envid.unwrap_or_default(),
        ]),
        events: draft.events,
    })
}

/// Read the next batch of recipients from `envelope.resume_offset` into
/// `envelope.recipients` (replacing the previous batch) and update `resume_offset`.
/// Returns the events of this read. Without a resume offset there is nothing to read and
/// the batch is empty. On error the envelope's recipients are emptied and `resume_offset`
/// is left unchanged, as qmgr leaves `rcpt_offset`.
pub fn read_recipient_batch<R: Read + Seek>(
    file: &mut R,
    envelope: &mut Envelope,
    options: &ReadOptions<'_>,
) -> Result<Vec<ReadEvent>, ReadError> {
    envelope.recipients.clear();
    let Some(start) = envelope.resume_offset else {
        return Ok(Vec::new());
    };
    let mut draft = Draft {
        size: Some(envelope.size),
        seen_all_non_rcpt: true,
        ..Draft::default()
    };
    match read_records(file, &mut draft, options, start, None) {
        Ok(()) => {
            draft.recipients.shrink_to_fit();
            envelope.recipients = draft.recipients;
            envelope.resume_offset = draft.resume_offset;
            Ok(draft.events)
        }
        Err(rejection) => Err(ReadError {
            rejection,
            events: draft.events,
        }),
    }
}

/// Attribute names that stand for record types (rec_attr_map).
fn mapped_attribute(name: &[u8]) -> Option<u8> {
    Some(match name {
        b"dsn_orig_rcpt" => REC_TYPE_DSN_ORCPT,
        b"notify_flags" => REC_TYPE_DSN_NOTIFY,
        b"envelope_id" => REC_TYPE_DSN_ENVID,
        b"ret_flags" => REC_TYPE_DSN_RET,
        b"create_time" => REC_TYPE_CTIME,
        _ => return None,
    })
}

/// split_nameval(): `name = value` with white space trimmed around both.
pub(super) fn split_nameval(buf: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let name_start = buf
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(buf.len());
    let rest = buf.get(name_start..).unwrap_or(&[]);
    if rest.first().is_none_or(|&b| b == b'=') {
        return Err("missing attribute name");
    }
    let name_len = rest
        .iter()
        .position(|&b| is_c_space(b) || b == b'=')
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(name_len);
    let eq = after.iter().position(|&b| !is_c_space(b));
    let Some(value) = eq
        .filter(|&i| after.get(i) == Some(&b'='))
        .and_then(|i| after.get(i + 1..))
    else {
        return Err("missing '=' after attribute name");
    };
    let value_start = value
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(value.len());
    let value = value.get(value_start..).unwrap_or(&[]);
    let value_end = value
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(0, |i| i + 1);
    Ok((name, value.get(..value_end).unwrap_or(value)))
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn dsn_notify_ok(n: i32) -> bool {
    n == DSN_NOTIFY_NEVER || n == n & (DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY)
}

/// REC_TYPE_TIME_SCAN: seconds by atol, then microseconds by atol after the leading digits.
fn scan_time(s: &[u8]) -> ArrivalTime {
    let sec = c_atol(s);
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    ArrivalTime {
        sec,
        usec: c_atol(s.get(digits..).unwrap_or(&[])),
    }
}

fn verp_ok(delims: &[u8], filter: &[u8]) -> bool {
    delims.len() == 2 && delims.iter().all(|d| filter.contains(d))
}

/// The record loop of qmgr_message_read(). `Ok` means it ended at `E` or at the recipient
/// cap; the caller applies the final sanity checks.
fn read_records<R: Read + Seek>(
    file: &mut R,
    d: &mut Draft,
    options: &ReadOptions<'_>,
    start: u64,
    // The file's position, when the caller knows it.
    position: Option<u64>,
) -> Result<(), Rejection> {
    let mut reader = match position {
        Some(pos) => RecordReader::at(&mut *file, pos),
        None => RecordReader::new(&mut *file).map_err(seek_failed)?,
    };
    reader.seek_to(start).map_err(seek_failed)?;
    let mut pointers = PointerFollower::new();
    let mut orig_rcpt: Option<Vec<u8>> = None;
    let mut dsn_orcpt: Option<Vec<u8>> = None;
    let mut dsn_notify: i32 = 0;
    let mut have_log_client_attr = false;
    let cap = options.recipient_cap;
    // One buffer for every record's data.
    let mut data = Vec::new();

    let result = loop {
        let mut only_xtra = false;
        let mut curr = reader.position();
        let data_offset = d.data_offset();
        if data_offset > 0 && curr == data_offset as u64 {
            // Skip the message content; the extracted segment must follow.
            let target = curr.saturating_add(d.data_size().max(0) as u64);
            reader.seek_to(target).map_err(seek_failed)?;
            curr = target;
            only_xtra = true;
        }
        let rec_type = match reader.next_record_into(&mut data) {
            Ok(Some((_, rec_type))) => rec_type.0,
            Ok(None) => break Err(Rejection::MissingEndRecord { cause: None }),
            Err(e) => break Err(Rejection::MissingEndRecord { cause: Some(e) }),
        };
        if rec_type == REC_TYPE_PTR {
            match pointers.target(c_string(&data)) {
                Ok(None) => continue,
                Ok(Some(target)) => match reader.seek_to(target) {
                    Ok(()) => continue,
                    Err(e) => {
                        break Err(Rejection::Pointer(PointerError::Seek {
                            error: e.to_string(),
                        }))
                    }
                },
                Err(e) => break Err(Rejection::Pointer(e)),
            }
        }
        if rec_type == 0 {
            // C: a type byte of 0 is indistinguishable from "no record".
            break Err(Rejection::MissingEndRecord { cause: None });
        }
        let allowed = if only_xtra {
            rec_type == REC_TYPE_XTRA
        } else {
            ENVELOPE_TYPES.contains(&rec_type) || EXTRACTED_TYPES.contains(&rec_type)
        };
        if !allowed {
            break Err(Rejection::UnexpectedRecordType {
                rec_type,
                offset: curr,
            });
        }
        if rec_type == REC_TYPE_END {
            d.seen_all_non_rcpt = true;
            break Ok(());
        }
        let raw = c_string(&data);
        let mut start: &[u8] = raw;
        let mut kind = rec_type;
        let mut attr: (&[u8], &[u8]) = (b"", b"");
        if rec_type == REC_TYPE_ATTR {
            match split_nameval(raw) {
                Ok((name, value)) => {
                    attr = (name, value);
                    if let Some(mapped) = mapped_attribute(name) {
                        start = value;
                        kind = mapped;
                    }
                }
                Err(reason) => {
                    break Err(Rejection::BadAttribute {
                        reason,
                        record: raw.to_vec(),
                    })
                }
            }
        }

        // Recipient records and the records that qualify the next recipient.
        match kind {
            REC_TYPE_RCPT => {
                if d.resume_offset.is_none() {
                    d.recipients.push(Recipient::new(
                        &orig_rcpt.take().unwrap_or_default(),
                        start,
                        curr,
                        &dsn_orcpt.take().unwrap_or_default(),
                        std::mem::take(&mut dsn_notify) as u32,
                    ));
                    if d.recipients.len() >= cap {
                        d.resume_offset = Some(reader.position());
                        if d.seen_all_non_rcpt {
                            break Ok(());
                        }
                        if d.read_flags() & QMGR_READ_FLAG_MIXED_RCPT_OTHER != 0 {
                            continue;
                        }
                        // Pure recipient sections: what remains unseen is the extracted
                        // segment, if we are still before the content.
                        if curr as i128 > i128::from(d.data_offset()) {
                            d.seen_all_non_rcpt = true;
                            break Ok(());
                        }
                        reader
                            .seek_to(d.data_offset().max(0) as u64)
                            .map_err(seek_failed)?;
                    }
                }
                continue;
            }
            REC_TYPE_DONE | REC_TYPE_DRCP => {
                if d.resume_offset.is_none() {
                    dsn_orcpt = None;
                    orig_rcpt = None;
                    dsn_notify = 0;
                }
                continue;
            }
            REC_TYPE_DSN_ORCPT => {
                if let Some(previous) = dsn_orcpt.take() {
                    d.warn(Warning::OutOfOrderDsnOrcptAddress(previous));
                }
                if d.resume_offset.is_none() {
                    dsn_orcpt = Some(start.to_vec());
                }
                continue;
            }
            REC_TYPE_DSN_NOTIFY => {
                if dsn_notify != 0 {
                    d.warn(Warning::OutOfOrderDsnNotify(dsn_notify));
                    dsn_notify = 0;
                }
                if d.resume_offset.is_none() {
                    let n = c_atoi(start);
                    if !all_digits(start) || n == 0 || !dsn_notify_ok(n) {
                        d.warn(Warning::MalformedDsnNotify(start.to_vec()));
                    } else {
                        dsn_notify = n;
                    }
                    continue;
                }
                // C falls through here; no handler below matches `n`.
            }
            REC_TYPE_ORCP => {
                if let Some(previous) = orig_rcpt.take() {
                    d.warn(Warning::OutOfOrderOrigRecipient(previous));
                }
                if d.resume_offset.is_none() {
                    orig_rcpt = Some(start.to_vec());
                }
                continue;
            }
            _ => {}
        }

        // Non-recipient records.
        if d.seen_all_non_rcpt {
            continue;
        }
        match kind {
            REC_TYPE_SIZE => {
                if d.data_offset() == 0 {
                    match parse_size_record(start) {
                        SizeParse::Fields { record, .. } => {
                            d.size = Some(record);
                            if record.data_offset <= 0 || record.data_size <= 0 {
                                break Err(Rejection::InvalidSizeRecord {
                                    record: start.to_vec(),
                                });
                            }
                            if record.qmgr_flags & !QMGR_READ_FLAG_USER != 0 {
                                break Err(Rejection::InvalidSizeFlags {
                                    record: start.to_vec(),
                                });
                            }
                        }
                        SizeParse::Legacy { data_size } => {
                            let (data_offset, data_size) =
                                legacy_scan(&mut reader, &mut pointers, &mut d.events, data_size)?;
                            d.size = Some(SizeRecord {
                                data_size,
                                data_offset,
                                rcpt_count: 0,
                                qmgr_flags: QMGR_READ_FLAG_MIXED_RCPT_OTHER,
                                content_length: 0,
                                smtputf8: 0,
                            });
                        }
                        SizeParse::Weird => break Err(Rejection::WeirdSizeRecord),
                    }
                }
                if let Some(size) = d.size.as_mut() {
                    if size.content_length == 0 {
                        size.content_length = size.data_size;
                    } else if size.content_length < 0 {
                        break Err(Rejection::InvalidSizeRecord {
                            record: start.to_vec(),
                        });
                    }
                }
            }
            REC_TYPE_TIME if d.arrival.sec == 0 => d.arrival = scan_time(start),
            REC_TYPE_CTIME if d.create_time == 0 => d.create_time = c_atol(start),
            REC_TYPE_FILT => d.filter = Some(start.to_vec()),
            REC_TYPE_INSP => d.inspect = Some(start.to_vec()),
            REC_TYPE_RDR => d.redirect = Some(start.to_vec()),
            REC_TYPE_FROM if d.sender.is_none() => {
                d.sender = Some(start.to_vec());
                let (size, nrcpt) = d.size.map_or((0, 0), |s| (s.content_length, s.rcpt_count));
                d.events.push(ReadEvent::Opened(Opened {
                    sender: start.to_vec(),
                    size,
                    nrcpt,
                }));
            }
            REC_TYPE_DSN_ENVID => d.dsn_envid = Some(start.to_vec()),
            REC_TYPE_DSN_RET => {
                let n = c_atoi(start);
                if !all_digits(start) || n == 0 || !(n == DSN_RET_FULL || n == DSN_RET_HDRS) {
                    d.warn(Warning::MalformedDsnRet(start.to_vec()));
                } else {
                    d.dsn_ret = n;
                }
            }
            REC_TYPE_ATTR => read_attribute(d, attr, curr, &mut have_log_client_attr),
            // C keys "seen" on a non-zero offset.
            REC_TYPE_WARN if d.warn.is_none_or(|w| w.offset == 0) => {
                d.warn = Some(WarnRecord {
                    offset: curr,
                    time: parse_warn_time(start),
                });
            }
            REC_TYPE_VERP if d.verp.is_none() => {
                if d.sender.as_ref().is_none_or(|s| s.is_empty()) {
                    d.warn(Warning::VerpNullSender);
                } else if !verp_ok(start, options.verp_delimiter_filter) {
                    d.warn(Warning::BadVerp(start.to_vec()));
                } else {
                    d.verp = Some(start.to_vec());
                }
            }
            _ => {}
        }
    };

    if result.is_ok() {
        if let Some(left) = dsn_orcpt {
            d.warn(Warning::OutOfOrderDsnOrcpt(left));
        }
        if let Some(left) = orig_rcpt {
            d.warn(Warning::OutOfOrderOrigRecipient(left));
        }
    }
    result
}

/// Named attributes other than the mapped ones.
fn read_attribute(d: &mut Draft, (name, value): (&[u8], &[u8]), offset: u64, have_log: &mut bool) {
    let set_first = |slot: &mut Option<Vec<u8>>, have_log: bool| {
        if !have_log && slot.is_none() {
            *slot = Some(value.to_vec());
        }
    };
    let first_or_warn = |slot: &mut Option<Vec<u8>>, name: &'static str| {
        if slot.is_none() {
            *slot = Some(value.to_vec());
            None
        } else {
            Some(Warning::MultipleAttribute {
                name,
                value: value.to_vec(),
            })
        }
    };
    let warning = match name {
        b"encoding" => {
            d.encoding = Some(value.to_vec());
            None
        }
        // Pre-2.3 names, used only when no log_* attribute was seen.
        b"client_name" | b"client_address" | b"client_port" | b"protocol_name" | b"helo_name" => {
            if let Some(slot) = d.client_slot(name) {
                set_first(slot, *have_log);
            }
            None
        }
        b"log_client_name"
        | b"log_client_address"
        | b"log_client_port"
        | b"log_protocol_name"
        | b"log_helo_name" => {
            if let Some(slot) = d.client_slot(&name[4..]) {
                *slot = Some(value.to_vec());
            }
            *have_log = true;
            None
        }
        b"sasl_method" => first_or_warn(&mut d.sasl_method, "sasl_method"),
        b"sasl_username" => first_or_warn(&mut d.sasl_username, "sasl_username"),
        b"sasl_sender" => first_or_warn(&mut d.sasl_sender, "sasl_sender"),
        b"log_ident" => first_or_warn(&mut d.log_ident, "log_ident"),
        b"rewrite_context" => first_or_warn(&mut d.rewrite_context, "rewrite_context"),
        b"trace_flags" => {
            if d.trace_flags == 0 {
                d.trace_flags = c_atoi(value) & DEL_REQ_TRACE_FLAGS_MASK;
                d.trace_flags_offset = (d.trace_flags == DEL_REQ_FLAG_RECORD).then_some(offset);
            }
            None
        }
        _ => None,
    };
    if let Some(w) = warning {
        d.warn(w);
    }
}
