//! Flow-control tokens: the bytes in master's shared pipe (fds 3/4) that let cleanup(8) and
//! other receivers go at full speed while the queue manager keeps up (in_flow_delay).

/// What the queue manager does with the pipe at the end of a loop iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowAction {
    /// Nothing to do.
    None,
    /// Write this many zero bytes to fd 4.
    Put(usize),
    /// Read and discard this many bytes from fd 3.
    Get(usize),
}

/// The C queue manager's rule, run after every iteration when `in_flow_delay > 0`: with fewer
/// tokens than `process_limit` (default_process_limit) in the pipe, put one back for a message
/// just imported from incoming, or top the pipe up when no incoming scan is running; with more,
/// take the surplus out.
pub fn tokens_to_move(
    tokens_in_pipe: usize,
    process_limit: usize,
    imported_from_incoming: bool,
    incoming_scan_running: bool,
) -> FlowAction {
    if tokens_in_pipe < process_limit {
        if imported_from_incoming {
            FlowAction::Put(1)
        } else if !incoming_scan_running {
            FlowAction::Put(process_limit - tokens_in_pipe)
        } else {
            FlowAction::None
        }
    } else if tokens_in_pipe > process_limit {
        FlowAction::Get(tokens_in_pipe - process_limit)
    } else {
        FlowAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_message_taken_from_incoming() {
        assert_eq!(tokens_to_move(5, 200, true, true), FlowAction::Put(1));
        assert_eq!(tokens_to_move(5, 200, true, false), FlowAction::Put(1));
    }

    #[test]
    fn nothing_while_the_incoming_scan_runs_without_an_import() {
        assert_eq!(tokens_to_move(5, 200, false, true), FlowAction::None);
    }

    #[test]
    fn pipe_topped_up_when_incoming_is_drained() {
        // The capture: limit 200, 197 tokens left, incoming scan ended: 3 bytes written.
        assert_eq!(tokens_to_move(197, 200, false, false), FlowAction::Put(3));
        assert_eq!(tokens_to_move(200, 200, false, false), FlowAction::None);
    }

    #[test]
    fn surplus_is_taken_out() {
        assert_eq!(tokens_to_move(250, 200, true, false), FlowAction::Get(50));
    }
}
