//! Pre-1.0 queue files, whose content offsets come from the `M` record.

use std::io::{Read, Seek};

use super::diagnostics::{seek_failed, FileWarning, ReadEvent, Rejection};
use crate::queue::record::{
    c_atol, c_string, PointerError, PointerFollower, RecordReader, REC_TYPE_DTXT, REC_TYPE_END,
    REC_TYPE_MESG, REC_TYPE_PTR,
};

/// qmgr_message_oldstyle_scan(): a pre-1.0 file's content offsets come from its `M` record.
/// Reads from the start with pointer following and padding skipping, then restores the
/// position. Returns (data_offset, data_size).
pub(super) fn legacy_scan<R: Read + Seek>(
    reader: &mut RecordReader<R>,
    pointers: &mut PointerFollower,
    events: &mut Vec<ReadEvent>,
    mut data_size: i64,
) -> Result<(i64, i64), Rejection> {
    let orig = reader.position();
    reader.seek_to(0).map_err(seek_failed)?;
    let mut data_offset: i64 = 0;
    let mut saw_end = false;
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => {
                events.push(ReadEvent::FileWarning(FileWarning::Record(e)));
                break;
            }
        };
        match record.rec_type.0 {
            0 => break,
            REC_TYPE_PTR => match pointers.target(c_string(&record.data)) {
                Ok(None) => {}
                Ok(Some(target)) => {
                    if let Err(e) = reader.seek_to(target) {
                        events.push(ReadEvent::FileWarning(FileWarning::Pointer(
                            PointerError::Seek {
                                error: e.to_string(),
                            },
                        )));
                        break;
                    }
                }
                Err(e) => {
                    events.push(ReadEvent::FileWarning(FileWarning::Pointer(e)));
                    break;
                }
            },
            REC_TYPE_DTXT => {}
            REC_TYPE_END => {
                saw_end = true;
                break;
            }
            REC_TYPE_MESG if data_offset == 0 => {
                data_offset = reader.position() as i64;
                let value = c_string(&record.data);
                let extra = c_atol(value);
                if extra <= data_offset {
                    return Err(Rejection::LegacyBadExtraOffset {
                        value: value.to_vec(),
                    });
                }
                reader.seek_to(extra as u64).map_err(seek_failed)?;
                data_size = extra - data_offset;
            }
            _ => {}
        }
    }
    reader.seek_to(orig).map_err(seek_failed)?;
    if data_offset == 0 || !saw_end {
        return Err(Rejection::LegacyOutOfOrder);
    }
    Ok((data_offset, data_size))
}
