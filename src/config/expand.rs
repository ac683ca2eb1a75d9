//! `$name` expansion of parameter values (util/mac_parse.c, util/mac_expand.c and the
//! compatibility-level operators of global/compat_level.c in Postfix 3.7).
//!
//! Supported: `$name`, `${name}`, `$(name)`, `$$`, `${name?text}`, `${name:text}`,
//! `${name?{t}:{f}}`, relational `${{a} OP {b}}` optionally followed by `?`/`:` operands, with
//! OP in `== != < <= >= >` and the `level` suffix (`<level` ...) that compares compatibility
//! levels. Errors are typed; their `Display` is the warning Postfix logs before it dies with
//! `dictionary mail_dict: macro processing error`.

use std::fmt;

use super::value::c_strtol;

/// Postfix's nesting limit for macro calls within one expansion.
const MAX_LEVEL: u32 = 100;
/// Guard across nested operand expansions (C has none there and would overflow its stack).
const MAX_TOTAL_DEPTH: u32 = 150;
/// Guard against exponential expansion (`a = $b$b`, `b = $a$a`), where C would never finish.
const MAX_STEPS: u64 = 200_000;
/// Whitespace that may surround `{...}` operands (CHARS_SPACE).
const OPERAND_SPACE: &[u8] = b" \t\r\n";
/// Bytes that make up a relational operator token, for diagnostics.
const OPERATOR_BYTES: &[u8] = b"<>!=?+-*/~&|%";

/// What went wrong while expanding; `Display` gives Postfix's warning (or fatal) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${` or `$(` without its closing bracket; carries the whole value.
    TruncatedReference { value: Vec<u8> },
    /// `$` followed by nothing usable as a name; carries the whole value.
    EmptyName { value: Vec<u8> },
    /// More than 100 nested macro calls (e.g. a parameter that refers to itself).
    Nesting { text: Vec<u8> },
    /// A `{` operand without its `}`.
    UnbalancedBraces { text: Vec<u8> },
    /// No relational operator after `{left}`.
    OperatorExpected { left: Vec<u8>, at: Vec<u8> },
    /// An operator suffix other than `level`.
    BadOperatorSuffix { operator: Vec<u8>, suffix: Vec<u8> },
    /// No `{right}` operand after the operator.
    OperandExpected {
        left: Vec<u8>,
        operator: Vec<u8>,
        at: Vec<u8>,
    },
    /// Junk after a relational expression.
    QuestionOrColonExpected { at: Vec<u8> },
    /// A parameter name with a character outside `[A-Za-z0-9_]`.
    NameSyntax { before: Vec<u8>, at: Vec<u8> },
    /// Junk after the `?` operand.
    ColonExpected { operand: Vec<u8>, at: Vec<u8> },
    /// Junk after the `:` operand.
    UnexpectedInput { operand: Vec<u8>, at: Vec<u8> },
    /// A `level` operand that is not `major[.minor[.patch]]`.
    BadCompatibilityLevel { text: Vec<u8> },
    /// An all-digit operand too large for a C long (immediately fatal in Postfix).
    BadConversion { text: Vec<u8> },
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `%.20s`
fn first20(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(20)]
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ExpandError::*;
        match self {
            TruncatedReference { value } => {
                write!(f, "truncated macro reference: \"{}\"", show(value))
            }
            EmptyName { value } => write!(f, "empty macro name: \"{}\"", show(value)),
            Nesting { text } => write!(f, "unreasonable macro call nesting: \"{}\"", show(text)),
            UnbalancedBraces { text } => write!(
                f,
                "unbalanced {{}} in attribute expression: \"{}\"",
                show(text)
            ),
            // The doubled quotes are in Postfix's MAC_EXP_OP_STR_ANY.
            OperatorExpected { left, at } => write!(
                f,
                "\"==\" or \"!=\"\" or \"<\"\" or \"<=\"\" or \">=\"\" or \">\" expected at: \"...{}}}>>>{}\"",
                show(left),
                show(first20(at))
            ),
            BadOperatorSuffix { operator, suffix } => write!(
                f,
                "bad operator suffix at: \"...{}>>>{}\"",
                show(operator),
                show(suffix)
            ),
            OperandExpected { left, operator, at } => write!(
                f,
                "\"{{expression}}\" expected at: \"...{{{}}} {}>>>{}\"",
                show(left),
                show(operator),
                show(first20(at))
            ),
            QuestionOrColonExpected { at } => write!(
                f,
                "\"?\" or \":\" expected at: \"...}}>>>{}\"",
                show(first20(at))
            ),
            NameSyntax { before, at } => write!(
                f,
                "attribute name syntax error at: \"...{}>>>{}\"",
                show(before),
                show(first20(at))
            ),
            ColonExpected { operand, at } => write!(
                f,
                "\":\" expected at: \"...{}}}>>>{}\"",
                show(operand),
                show(first20(at))
            ),
            UnexpectedInput { operand, at } => write!(
                f,
                "unexpected input at: \"...{}}}>>>{}\"",
                show(operand),
                show(first20(at))
            ),
            BadCompatibilityLevel { text } => write!(
                f,
                "malformed compatibility level syntax: \"{}\"",
                show(text)
            ),
            BadConversion { text } => write!(f, "mac_exp_eval: bad conversion: {}", show(text)),
        }
    }
}

impl ExpandError {
    /// The fatal message Postfix logs after the warning (`Display`), or `None` when the
    /// warning text itself is the fatal message.
    pub fn fatal_message(&self) -> Option<&'static str> {
        match self {
            ExpandError::BadConversion { .. } => None,
            _ => Some("dictionary mail_dict: macro processing error"),
        }
    }
}

impl std::error::Error for ExpandError {}

/// The result of a successful expansion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    pub value: Vec<u8>,
    /// A plain `$name` referred to an undefined name (MAC_PARSE_UNDEF; not an error).
    pub saw_undefined: bool,
}

/// Expands `pattern`. `lookup` returns the raw (unexpanded) value of a name, or `None` when it
/// is undefined. With `recursive`, looked-up values are expanded again (mail_conf_eval);
/// without, they are inserted as they are (mail_conf_eval_once). Text after a NUL is ignored.
pub fn expand(
    pattern: &[u8],
    lookup: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    recursive: bool,
) -> Result<Expansion, ExpandError> {
    let pattern = match memchr::memchr(0, pattern) {
        Some(end) => &pattern[..end],
        None => pattern,
    };
    let mut expander = Expander {
        lookup,
        recursive,
        result: Vec::new(),
        level: 0,
        outer_depth: 0,
        steps: 0,
        saw_undefined: false,
    };
    expander.parse(pattern)?;
    Ok(Expansion {
        value: expander.result,
        saw_undefined: expander.saw_undefined,
    })
}

enum Token<'t> {
    Literal(&'t [u8]),
    Expression(&'t [u8]),
}

struct Expander<'l> {
    lookup: &'l dyn Fn(&[u8]) -> Option<Vec<u8>>,
    recursive: bool,
    result: Vec<u8>,
    /// Nesting of macro calls in this expansion (mac_expand's `level`).
    level: u32,
    /// Levels held by the expansions this one is an operand of.
    outer_depth: u32,
    /// Macro calls made so far, including operand expansions.
    steps: u64,
    saw_undefined: bool,
}

fn span(bytes: &[u8], from: usize, set: &[u8]) -> usize {
    bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| set.contains(b))
        .count()
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Where the `{` is when only whitespace precedes it (MAC_EXP_FIND_LEFT_CURLY).
fn find_left_curly(bytes: &[u8], from: usize) -> Option<usize> {
    let at = from + span(bytes, from, OPERAND_SPACE);
    (bytes.get(at) == Some(&b'{')).then_some(at)
}

/// The text between the `{` at `open` and its balancing `}`, and the position after the `}`
/// and any whitespace that follows it.
fn curly_payload(bytes: &[u8], open: usize) -> Result<(&[u8], usize), ExpandError> {
    let mut depth = 1u32;
    let mut at = open + 1;
    loop {
        match bytes.get(at) {
            None => {
                return Err(ExpandError::UnbalancedBraces {
                    text: bytes.get(open..).unwrap_or_default().to_vec(),
                })
            }
            Some(b'{') => depth += 1,
            Some(b'}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Some(_) => {}
        }
        at += 1;
    }
    let payload = bytes.get(open + 1..at).unwrap_or_default();
    let after = at + 1;
    Ok((payload, after + span(bytes, after, OPERAND_SPACE)))
}

#[derive(Clone, Copy)]
enum Relation {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
}

impl Relation {
    fn from_token(token: &[u8]) -> Option<Relation> {
        Some(match token {
            b"==" => Relation::Eq,
            b"!=" => Relation::Ne,
            b"<" => Relation::Lt,
            b"<=" => Relation::Le,
            b">=" => Relation::Ge,
            b">" => Relation::Gt,
            _ => return None,
        })
    }

    fn holds(self, order: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Relation::Eq => order == Equal,
            Relation::Ne => order != Equal,
            Relation::Lt => order == Less,
            Relation::Le => order != Greater,
            Relation::Ge => order != Less,
            Relation::Gt => order == Greater,
        }
    }
}

fn all_digits(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

/// Numeric comparison when both sides are all digits, else byte-wise (strcmp).
fn compare_plain(left: &[u8], right: &[u8]) -> Result<std::cmp::Ordering, ExpandError> {
    if all_digits(left) && all_digits(right) {
        let number = |text: &[u8]| {
            let parsed = c_strtol(text);
            if parsed.overflow {
                Err(ExpandError::BadConversion {
                    text: text.to_vec(),
                })
            } else {
                Ok(parsed.value)
            }
        };
        Ok(number(left)?.cmp(&number(right)?))
    } else {
        Ok(left.cmp(right))
    }
}

/// Parses a compatibility level `major[.minor[.patch]]` into one comparable number
/// (compat_level_from_string): major in bits 20 and up, minor and patch 10 bits each.
pub fn compatibility_level(text: &[u8]) -> Option<i64> {
    const MINOR_MAX: i64 = 0x3ff;
    let bad = || None;
    let major = c_strtol(text);
    let rest = text.get(major.end..).unwrap_or_default();
    if major.end == 0
        || major.overflow
        || !(rest.is_empty() || rest[0] == b'.')
        || !(0..=(i64::MAX >> 20)).contains(&major.value)
    {
        return bad();
    }
    let mut level = major.value << 20;
    if rest.is_empty() {
        return Some(level);
    }
    let text = &rest[1..];
    let minor = c_strtol(text);
    let rest = text.get(minor.end..).unwrap_or_default();
    if minor.end == 0
        || minor.overflow
        || !(rest.is_empty() || rest[0] == b'.')
        || !(0..=MINOR_MAX).contains(&minor.value)
    {
        return bad();
    }
    level |= minor.value << 10;
    if rest.is_empty() {
        return Some(level);
    }
    let text = &rest[1..];
    let patch = c_strtol(text);
    if patch.end == 0
        || patch.overflow
        || patch.end != text.len()
        || !(0..=MINOR_MAX).contains(&patch.value)
    {
        return bad();
    }
    Some(level | patch.value)
}

fn compare_levels(left: &[u8], right: &[u8]) -> Result<std::cmp::Ordering, ExpandError> {
    let level = |text: &[u8]| {
        compatibility_level(text).ok_or_else(|| ExpandError::BadCompatibilityLevel {
            text: text.to_vec(),
        })
    };
    Ok(level(left)?.cmp(&level(right)?))
}

impl Expander<'_> {
    /// mac_parse(): split into literal text and macro references, handing each to `token`.
    fn parse(&mut self, value: &[u8]) -> Result<(), ExpandError> {
        let mut literal: Vec<u8> = Vec::new();
        let mut at = 0usize;
        while let Some(&byte) = value.get(at) {
            if byte != b'$' {
                literal.push(byte);
                at += 1;
                continue;
            }
            if value.get(at + 1) == Some(&b'$') {
                literal.push(b'$');
                at += 2;
                continue;
            }
            if !literal.is_empty() {
                self.token(Token::Literal(&literal))?;
                literal.clear();
            }
            at += 1;
            let close = match value.get(at) {
                Some(b'{') => Some(b'}'),
                Some(b'(') => Some(b')'),
                _ => None,
            };
            let name = if let Some(close) = close {
                let open = value[at];
                let mut depth = 1u32;
                let mut end = at + 1;
                while depth > 0 {
                    match value.get(end) {
                        None => {
                            return Err(ExpandError::TruncatedReference {
                                value: value.to_vec(),
                            })
                        }
                        Some(&b) if b == open => depth += 1,
                        Some(&b) if b == close => depth -= 1,
                        Some(_) => {}
                    }
                    end += 1;
                }
                let name = &value[at + 1..end - 1];
                at = end;
                name
            } else {
                let len = value[at..].iter().take_while(|&&b| is_name_byte(b)).count();
                let name = &value[at..at + len];
                at += len;
                name
            };
            if name.is_empty() {
                return Err(ExpandError::EmptyName {
                    value: value.to_vec(),
                });
            }
            self.token(Token::Expression(name))?;
        }
        if !literal.is_empty() {
            self.token(Token::Literal(&literal))?;
        }
        Ok(())
    }

    /// mac_expand_callback()
    fn token(&mut self, token: Token<'_>) -> Result<(), ExpandError> {
        self.steps += 1;
        if self.level > MAX_LEVEL
            || self.outer_depth + self.level > MAX_TOTAL_DEPTH
            || self.steps > MAX_STEPS
        {
            let text = match token {
                Token::Literal(text) | Token::Expression(text) => text.to_vec(),
            };
            return Err(ExpandError::Nesting { text });
        }
        self.level += 1;
        match token {
            Token::Literal(text) => self.result.extend_from_slice(text),
            Token::Expression(text) => self.expression(text)?,
        }
        self.level -= 1;
        Ok(())
    }

    fn expression(&mut self, text: &[u8]) -> Result<(), ExpandError> {
        let looked_up: Option<Vec<u8>>;
        let operator: Option<u8>;
        let mut at;
        if let Some(open) = find_left_curly(text, 0) {
            let (truth, after) = self.relational(text, open)?;
            looked_up = Some(truth);
            at = after;
            operator = match text.get(at) {
                None => None,
                Some(&op @ (b'?' | b':')) => {
                    at += 1;
                    Some(op)
                }
                Some(_) => {
                    return Err(ExpandError::QuestionOrColonExpected {
                        at: text[at..].to_vec(),
                    })
                }
            };
        } else {
            let start = span(text, 0, OPERAND_SPACE);
            at = start;
            loop {
                let blanks = span(text, at, OPERAND_SPACE);
                match text.get(at + blanks) {
                    None => {
                        operator = None;
                        break;
                    }
                    Some(&op @ (b'?' | b':')) => {
                        operator = Some(op);
                        break;
                    }
                    Some(_) => {}
                }
                if !is_name_byte(text[at]) {
                    return Err(ExpandError::NameSyntax {
                        before: text[..at].to_vec(),
                        at: text[at..].to_vec(),
                    });
                }
                at += 1;
            }
            let name = &text[start..at];
            if operator.is_some() {
                at += span(text, at, OPERAND_SPACE) + 1;
            }
            looked_up = (self.lookup)(name);
        }
        let non_empty = looked_up.as_ref().is_some_and(|v| !v.is_empty());
        match operator {
            Some(b'?') => {
                let (if_true, rest) = operand(text, at)?;
                if non_empty {
                    self.parse(if_true)?;
                }
                match text.get(rest) {
                    None => Ok(()),
                    Some(b':') => self.if_false(text, rest + 1, non_empty),
                    Some(_) => Err(ExpandError::ColonExpected {
                        operand: if_true.to_vec(),
                        at: text[rest..].to_vec(),
                    }),
                }
            }
            Some(_) => self.if_false(text, at, non_empty),
            None => {
                match looked_up {
                    None => self.saw_undefined = true,
                    Some(value) if value.is_empty() => {}
                    Some(value) if self.recursive => self.parse(&value)?,
                    Some(value) => self.result.extend_from_slice(&value),
                }
                Ok(())
            }
        }
    }

    fn if_false(&mut self, text: &[u8], at: usize, non_empty: bool) -> Result<(), ExpandError> {
        let (if_false, rest) = operand(text, at)?;
        if !non_empty {
            self.parse(if_false)?;
        }
        if rest < text.len() {
            return Err(ExpandError::UnexpectedInput {
                operand: if_false.to_vec(),
                at: text[rest..].to_vec(),
            });
        }
        Ok(())
    }

    /// `{left} OP[level] {right}` starting at the `{` at `open`: `"true"` or empty, and the
    /// position after the right operand.
    fn relational(&mut self, text: &[u8], open: usize) -> Result<(Vec<u8>, usize), ExpandError> {
        let (left, mut at) = curly_payload(text, open)?;
        let operator_start = at;
        let operator_len = span(text, at, OPERATOR_BYTES);
        let operator = &text[at..at + operator_len];
        let relation =
            Relation::from_token(operator).ok_or_else(|| ExpandError::OperatorExpected {
                left: left.to_vec(),
                at: text[at..].to_vec(),
            })?;
        at += operator_len;
        let suffix_len = text[at..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let by_level = if suffix_len > 0 {
            let suffix = &text[at..at + suffix_len];
            if suffix != b"level" {
                return Err(ExpandError::BadOperatorSuffix {
                    operator: operator.to_vec(),
                    suffix: suffix.to_vec(),
                });
            }
            at += suffix_len;
            true
        } else {
            false
        };
        let right_open = find_left_curly(text, at).ok_or_else(|| ExpandError::OperandExpected {
            left: left.to_vec(),
            operator: text[operator_start..operator_start + operator_len].to_vec(),
            at: text[at..].to_vec(),
        })?;
        let (right, after) = curly_payload(text, right_open)?;
        let left = self.operand_value(left)?;
        let right = self.operand_value(right)?;
        let order = if by_level {
            compare_levels(&left, &right)?
        } else {
            compare_plain(&left, &right)?
        };
        let truth = if relation.holds(order) {
            b"true".to_vec()
        } else {
            Vec::new()
        };
        Ok((truth, after))
    }

    /// A relational operand is a separate expansion (its own nesting count).
    fn operand_value(&mut self, text: &[u8]) -> Result<Vec<u8>, ExpandError> {
        let mut inner = Expander {
            lookup: self.lookup,
            recursive: self.recursive,
            result: Vec::new(),
            level: 0,
            outer_depth: self.outer_depth + self.level,
            steps: self.steps,
            saw_undefined: false,
        };
        let parsed = inner.parse(text);
        self.steps = inner.steps;
        parsed?;
        self.saw_undefined |= inner.saw_undefined;
        Ok(inner.result)
    }
}

/// A `?`/`:` operand: `{text}` (blanks allowed around it) or the rest of the text.
fn operand(text: &[u8], at: usize) -> Result<(&[u8], usize), ExpandError> {
    match find_left_curly(text, at) {
        Some(open) => curly_payload(text, open),
        None => Ok((text.get(at..).unwrap_or_default(), text.len())),
    }
}

#[cfg(test)]
mod tests;
