//! Celery's wire format on Redis, as kombu and Celery 5 write it: task messages (protocol 2),
//! result metadata, exceptions, pidbox and event envelopes. Pure functions, no I/O.
//!
//! A kombu envelope is JSON: `{"body": base64, "content-encoding", "content-type", "headers",
//! "properties"}`. A task message's headers name the task (`task`, `id`, `eta`, `expires`,
//! `timelimit` as `[hard, soft]`, `retries`, `group`, ...) and its body decodes to
//! `[args, kwargs, embed]`, where `embed` carries the workflow: `callbacks`, `errbacks`, `chain`
//! (the remaining steps, last first) and `chord`. See `shared/CELERY_PROTOCOL.md` for what was
//! observed on the wire.

use serde_json::{Map, Value, json};

use crate::queue::Millis;

/// Separator kombu puts between a queue's name and its priority step (`Q\x06\x163`).
pub const PRIORITY_SEP: &str = "\x06\x16";

/// kombu's priority steps on Redis. A message of priority `p` goes to the list of the step that
/// `bisect` picks; step 0 is the queue's own name and is served first.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// The four Redis lists of one Celery queue, in the order kombu's consumer serves them.
pub fn priority_lists(queue: &str) -> [String; 4] {
    PRIORITY_STEPS.map(|step| priority_list(queue, step))
}

/// The list of `queue` that holds messages of priority step `step` (0, 3, 6 or 9).
pub fn priority_list(queue: &str, step: u8) -> String {
    if step == 0 { queue.to_owned() } else { format!("{queue}{PRIORITY_SEP}{step}") }
}

/// The priority step kombu files a message of `priority` under (`bisect_left` over the steps,
/// as kombu does).
pub fn priority_step(priority: u8) -> u8 {
    PRIORITY_STEPS.iter().copied().find(|&step| step >= priority).unwrap_or(9)
}

// ---------------------------------------------------------------------------------------------
// Base64 (standard alphabet, padded), as kombu's `body_encoding: base64`.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Decodes standard or URL-safe base64, padded or not; whitespace is ignored.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for (i, c) in text.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err(format!("invalid base64 character {:?} at {i}", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Time: ISO 8601 as Python's `datetime.isoformat()` writes it.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `2026-11-23T12:50:16.001428+00:00` (also `Z`, a space for `T`, no fraction, or no
/// offset, which is read as UTC) into milliseconds since the Unix epoch.
pub fn parse_iso8601(text: &str) -> Option<Millis> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None }
    };
    if bytes.len() < 19 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let scaled: String = fraction[..digits].chars().chain("000".chars()).take(3).collect();
        millis = scaled.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let body = rest[1..].replace(':', "");
            if body.len() != 4 || !body.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            sign * (body[..2].parse::<i64>().ok()? * 60 + body[2..].parse::<i64>().ok()?)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

/// `2026-11-23T12:50:16.001000+00:00`: how Celery writes `date_done`.
pub fn format_iso8601(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        millis
    )
}

/// Seconds since the Unix epoch as a float, as Celery's events carry `timestamp`.
pub fn unix_seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

// ---------------------------------------------------------------------------------------------
// Envelopes.

/// Why a message could not be taken as a Celery task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Malformed {
    /// What is wrong, for the dead-letter record.
    pub reason: String,
    /// The task id, when the message got far enough to name one (a FAILURE is written for it).
    pub task_id: Option<String>,
}

impl Malformed {
    fn new(reason: impl Into<String>) -> Self {
        Malformed { reason: reason.into(), task_id: None }
    }
}

/// A kombu envelope, decoded: the body (JSON), headers and properties.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The decoded body.
    pub body: Value,
    /// `headers`.
    pub headers: Map<String, Value>,
    /// `properties`.
    pub properties: Map<String, Value>,
}

/// Decodes a kombu envelope whose body is JSON (base64-encoded or plain).
pub fn decode_envelope(raw: &[u8]) -> Result<Envelope, Malformed> {
    let outer: Value =
        serde_json::from_slice(raw).map_err(|e| Malformed::new(format!("not a JSON envelope: {e}")))?;
    let Value::Object(mut outer) = outer else {
        return Err(Malformed::new("the envelope is not a JSON object"));
    };
    let headers = match outer.remove("headers") {
        Some(Value::Object(h)) => h,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(Malformed::new("headers is not an object")),
    };
    let properties = match outer.remove("properties") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(Malformed::new("properties is not an object")),
    };
    let id = headers.get("id").and_then(Value::as_str).map(str::to_owned);
    let fail = |reason: String| Malformed { reason, task_id: id.clone() };
    let content_type = outer.get("content-type").and_then(Value::as_str).unwrap_or("application/json");
    if content_type != "application/json" {
        return Err(fail(format!(
            "content-type {content_type:?} is not supported (taskhost reads JSON only; set task_serializer='json')"
        )));
    }
    let body = match outer.remove("body") {
        Some(Value::String(text)) => {
            let bytes = if properties.get("body_encoding").and_then(Value::as_str) == Some("base64") {
                base64_decode(&text).map_err(|e| fail(format!("body is not base64: {e}")))?
            } else {
                text.into_bytes()
            };
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("body is not JSON: {e}")))?
        }
        Some(other) => other,
        None => return Err(fail("the envelope has no body".into())),
    };
    Ok(Envelope { body, headers, properties })
}

/// A kombu envelope around a JSON body, base64-encoded as kombu does.
pub fn encode_envelope(body: &Value, headers: Value, properties: Value) -> String {
    let mut properties = match properties {
        Value::Object(p) => p,
        _ => Map::new(),
    };
    properties.insert("body_encoding".into(), json!("base64"));
    properties.entry("delivery_mode").or_insert(json!(2));
    properties.entry("priority").or_insert(json!(0));
    properties.entry("delivery_tag").or_insert_with(|| json!(new_id()));
    json!({
        "body": base64_encode(body.to_string().as_bytes()),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    })
    .to_string()
}

/// A fresh id for messages and delivery tags.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// ---------------------------------------------------------------------------------------------
// Task messages.

/// A Celery signature (`{"task", "args", "kwargs", "options", "subtask_type", "immutable"}`),
/// kept as its JSON so that nothing a client put there is lost when it is passed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature(pub Map<String, Value>);

impl Signature {
    /// From JSON; `None` unless it is an object naming a task.
    pub fn from_value(value: &Value) -> Option<Self> {
        let map = value.as_object()?;
        map.get("task").and_then(Value::as_str)?;
        Some(Signature(map.clone()))
    }

    /// The task name.
    pub fn task(&self) -> &str {
        self.0.get("task").and_then(Value::as_str).unwrap_or("")
    }

    /// Positional arguments.
    pub fn args(&self) -> Vec<Value> {
        self.0.get("args").and_then(Value::as_array).cloned().unwrap_or_default()
    }

    /// Keyword arguments.
    pub fn kwargs(&self) -> Map<String, Value> {
        self.0.get("kwargs").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    /// `options` (task_id, queue, countdown, link, ...).
    pub fn options(&self) -> Map<String, Value> {
        self.0.get("options").and_then(Value::as_object).cloned().unwrap_or_default()
    }

    /// True for `.si()` signatures, which ignore the parent's result.
    pub fn immutable(&self) -> bool {
        self.0.get("immutable").and_then(Value::as_bool).unwrap_or(false)
    }

    /// `subtask_type`: `None` for a plain task, `group`, `chain`, `chord`.
    pub fn subtask_type(&self) -> Option<&str> {
        self.0.get("subtask_type").and_then(Value::as_str)
    }

    /// The signature as JSON.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

fn signatures(value: Option<&Value>) -> Vec<Signature> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Signature::from_value).collect(),
        Some(one @ Value::Object(_)) => Signature::from_value(one).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The workflow a task message carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embed {
    /// `link`: run with the result on success.
    pub callbacks: Vec<Signature>,
    /// `link_error`: run with the task id on failure.
    pub errbacks: Vec<Signature>,
    /// The rest of a chain, last step first: the next step is the last element.
    pub chain: Vec<Signature>,
    /// A chord's body, when this task is part of a chord's header.
    pub chord: Option<Signature>,
}

/// A decoded protocol-2 task message.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    /// Task id (the client's `AsyncResult` id).
    pub id: String,
    /// Celery task name.
    pub task: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Workflow.
    pub embed: Embed,
    /// Not before (from `eta`; `countdown` arrives as an `eta`).
    pub eta: Option<Millis>,
    /// Revoked as expired if not started by then.
    pub expires: Option<Millis>,
    /// Times Celery already retried it.
    pub retries: u32,
    /// `timelimit[0]`, seconds.
    pub hard_time_limit: Option<f64>,
    /// `timelimit[1]`, seconds.
    pub soft_time_limit: Option<f64>,
    /// Group id.
    pub group: Option<String>,
    /// Position in its group.
    pub group_index: Option<u64>,
    /// Root of the workflow.
    pub root_id: Option<String>,
    /// The task whose callback this is.
    pub parent_id: Option<String>,
    /// The client does not want the result stored.
    pub ignore_result: bool,
    /// `argsrepr`, for inspect and events.
    pub argsrepr: String,
    /// `kwargsrepr`, for inspect and events.
    pub kwargsrepr: String,
    /// `properties.reply_to`.
    pub reply_to: Option<String>,
    /// `properties.priority` (0-9; on Redis 0 is served first).
    pub priority: u8,
}

/// The longest `argsrepr`/`kwargsrepr` kept.
const REPR_LIMIT: usize = 1024;

fn truncated(mut s: String) -> String {
    if s.len() > REPR_LIMIT {
        let mut cut = REPR_LIMIT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn time_header(headers: &Map<String, Value>, name: &str, id: &str) -> Result<Option<Millis>, Malformed> {
    match headers.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_iso8601(text).map(Some).ok_or_else(|| Malformed {
            reason: format!("header {name} {text:?} is not an ISO 8601 time"),
            task_id: Some(id.to_owned()),
        }),
        // Some clients send epoch seconds.
        Some(Value::Number(n)) => Ok(n.as_f64().map(|s| (s * 1000.0) as Millis)),
        Some(other) => Err(Malformed {
            reason: format!("header {name} {other} is not a time"),
            task_id: Some(id.to_owned()),
        }),
    }
}

/// Decodes a Celery task message (protocol 2, JSON).
pub fn decode_task(raw: &[u8]) -> Result<TaskMessage, Malformed> {
    let envelope = decode_envelope(raw)?;
    let h = &envelope.headers;
    let Some(task) = h.get("task").and_then(Value::as_str) else {
        let reason = if envelope.body.get("task").is_some() {
            "a protocol 1 message (task in the body): taskhost reads protocol 2, Celery's default since 4.0"
        } else {
            "headers.task is missing: not a Celery task message"
        };
        return Err(Malformed::new(reason));
    };
    let Some(id) = h.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
        return Err(Malformed::new(format!("task {task:?} has no headers.id")));
    };
    let fail = |reason: String| Malformed { reason, task_id: Some(id.to_owned()) };
    let Value::Array(parts) = &envelope.body else {
        return Err(fail("body is not [args, kwargs, embed]".into()));
    };
    let args = match parts.first() {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(fail("args (body[0]) is not a list".into())),
    };
    let kwargs = match parts.get(1) {
        Some(Value::Object(k)) => k.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(fail("kwargs (body[1]) is not an object".into())),
    };
    let embed = match parts.get(2) {
        Some(Value::Object(e)) => Embed {
            callbacks: signatures(e.get("callbacks")),
            errbacks: signatures(e.get("errbacks")),
            chain: signatures(e.get("chain")),
            chord: e.get("chord").and_then(Signature::from_value),
        },
        _ => Embed::default(),
    };
    let (hard, soft) = match h.get("timelimit") {
        Some(Value::Array(limits)) => {
            (limits.first().and_then(Value::as_f64), limits.get(1).and_then(Value::as_f64))
        }
        _ => (None, None),
    };
    let text = |name: &str| h.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(TaskMessage {
        id: id.to_owned(),
        task: task.to_owned(),
        args,
        kwargs,
        embed,
        eta: time_header(h, "eta", id)?,
        expires: time_header(h, "expires", id)?,
        retries: h.get("retries").and_then(Value::as_u64).unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        hard_time_limit: hard.filter(|s| *s > 0.0),
        soft_time_limit: soft.filter(|s| *s > 0.0),
        group: text("group"),
        group_index: h.get("group_index").and_then(Value::as_u64),
        root_id: text("root_id"),
        parent_id: text("parent_id"),
        ignore_result: h.get("ignore_result").and_then(Value::as_bool).unwrap_or(false),
        argsrepr: truncated(text("argsrepr").unwrap_or_else(|| {
            Value::Array(parts.first().and_then(Value::as_array).cloned().unwrap_or_default()).to_string()
        })),
        kwargsrepr: truncated(text("kwargsrepr").unwrap_or_else(|| "{}".into())),
        reply_to: envelope.properties.get("reply_to").and_then(Value::as_str).map(str::to_owned),
        priority: envelope.properties.get("priority").and_then(Value::as_u64).unwrap_or(0).min(255) as u8,
    })
}

/// A task message to send (a chain's next step, a callback), built the way `apply_async` does.
#[derive(Debug, Clone)]
pub struct OutgoingTask {
    /// Task id (a frozen signature's `options.task_id`, or fresh).
    pub id: String,
    /// Task name.
    pub task: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// The queue (its list) to push to.
    pub queue: String,
    /// Rest of the chain, last step first.
    pub chain: Vec<Signature>,
    /// `link`.
    pub callbacks: Vec<Signature>,
    /// `link_error`.
    pub errbacks: Vec<Signature>,
    /// Root of the workflow.
    pub root_id: String,
    /// The task that sent it.
    pub parent_id: Option<String>,
    /// Group id and index.
    pub group: Option<(String, Option<u64>)>,
    /// Not before.
    pub eta: Option<Millis>,
    /// Expiry.
    pub expires: Option<Millis>,
    /// `[hard, soft]` seconds.
    pub timelimit: (Option<f64>, Option<f64>),
    /// 0-9.
    pub priority: u8,
    /// `reply_to` property.
    pub reply_to: Option<String>,
    /// Who sent it, as `origin`.
    pub origin: String,
}

impl OutgoingTask {
    /// A signature called with `args` before its own (unless immutable), as Celery's
    /// `signature.apply_async((retval,), ...)` does. `default_queue` is used when the signature
    /// names no queue.
    pub fn from_signature(
        sig: &Signature,
        leading_args: Vec<Value>,
        default_queue: &str,
        parent_id: Option<&str>,
        root_id: &str,
        origin: &str,
        now: Millis,
    ) -> Self {
        let options = sig.options();
        let opt_str = |name: &str| options.get(name).and_then(Value::as_str).map(str::to_owned);
        let mut args = if sig.immutable() { Vec::new() } else { leading_args };
        args.extend(sig.args());
        let eta = options.get("eta").and_then(Value::as_str).and_then(parse_iso8601).or_else(|| {
            options.get("countdown").and_then(Value::as_f64).map(|s| now + (s * 1000.0) as Millis)
        });
        let expires = match options.get("expires") {
            Some(Value::String(t)) => parse_iso8601(t),
            Some(Value::Number(n)) => n.as_f64().map(|s| now + (s * 1000.0) as Millis),
            _ => None,
        };
        OutgoingTask {
            id: opt_str("task_id").unwrap_or_else(new_id),
            task: sig.task().to_owned(),
            args,
            kwargs: sig.kwargs(),
            queue: opt_str("queue")
                .or_else(|| opt_str("routing_key"))
                .unwrap_or_else(|| default_queue.to_owned()),
            chain: signatures(options.get("chain")),
            callbacks: signatures(options.get("link")),
            errbacks: signatures(options.get("link_error")),
            root_id: root_id.to_owned(),
            parent_id: parent_id.map(str::to_owned),
            group: opt_str("group_id").map(|g| (g, options.get("group_index").and_then(Value::as_u64))),
            eta,
            expires,
            timelimit: (
                options.get("time_limit").and_then(Value::as_f64),
                options.get("soft_time_limit").and_then(Value::as_f64),
            ),
            priority: options.get("priority").and_then(Value::as_u64).unwrap_or(0).min(9) as u8,
            reply_to: opt_str("reply_to"),
            origin: origin.to_owned(),
        }
    }

    /// The Redis list it goes to (by priority step) and the envelope, ready for `LPUSH`.
    pub fn encode(&self) -> (String, String) {
        let list = |v: &[Signature]| {
            if v.is_empty() { Value::Null } else { Value::Array(v.iter().map(Signature::to_value).collect()) }
        };
        let body = json!([
            self.args,
            self.kwargs,
            {"callbacks": list(&self.callbacks), "errbacks": list(&self.errbacks), "chain": list(&self.chain), "chord": null}
        ]);
        let time = |t: Option<Millis>| t.map_or(Value::Null, |t| json!(format_iso8601(t)));
        let headers = json!({
            "lang": "py",
            "task": self.task,
            "id": self.id,
            "shadow": null,
            "eta": time(self.eta),
            "expires": time(self.expires),
            "group": self.group.as_ref().map(|g| g.0.clone()),
            "group_index": self.group.as_ref().and_then(|g| g.1),
            "retries": 0,
            "timelimit": [self.timelimit.0, self.timelimit.1],
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "argsrepr": truncated(Value::Array(self.args.clone()).to_string()),
            "kwargsrepr": truncated(Value::Object(self.kwargs.clone()).to_string()),
            "origin": self.origin,
            "ignore_result": false,
            "replaced_task_nesting": 0,
            "stamped_headers": null,
            "stamps": {},
        });
        let properties = json!({
            "correlation_id": self.id,
            "reply_to": self.reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": self.queue},
            "priority": self.priority,
            "delivery_tag": new_id(),
        });
        let step = priority_step(self.priority);
        (priority_list(&self.queue, step), encode_envelope(&body, headers, properties))
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

/// Celery task states taskhost writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running (`task_track_started`).
    Started,
    /// Custom state with a meta dict, as `update_state(state='PROGRESS', meta=...)` writes.
    Progress,
    /// Will run again.
    Retry,
    /// Finished with a result.
    Success,
    /// Finished with an exception.
    Failure,
    /// Revoked (cancelled or expired).
    Revoked,
}

impl State {
    /// The name Celery uses.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Started => "STARTED",
            State::Progress => "PROGRESS",
            State::Retry => "RETRY",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Revoked => "REVOKED",
        }
    }

    /// True for the states after which `get()` returns (Celery's `READY_STATES`).
    pub fn is_ready(self) -> bool {
        matches!(self, State::Success | State::Failure | State::Revoked)
    }
}

/// An exception as Celery serialises it: `get()` re-raises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// Class name.
    pub exc_type: &'static str,
    /// Module to find the class in; a module the client has not imported yields a synthesized
    /// class of that name.
    pub exc_module: &'static str,
    /// The message (the exception's one argument).
    pub message: String,
}

impl Exception {
    /// The `result` of a FAILURE, REVOKED or RETRY meta.
    pub fn to_value(&self) -> Value {
        json!({"exc_type": self.exc_type, "exc_message": [self.message], "exc_module": self.exc_module})
    }

    /// `ValueError('message')`, as Celery's `task-failed` event shows it.
    pub fn repr(&self) -> String {
        format!("{}({:?})", self.exc_type, self.message)
    }
}

/// Module of the exceptions that have no Python class of their own: clients get a synthesized
/// exception class with the name (`except Exception as e: type(e).__name__ == 'OutOfFuel'`).
const TASKHOST_MODULE: &str = "taskhost.exceptions";

/// The exception a failed task's `get()` raises, by taskhost's `error.kind`.
pub fn exception_for(kind: &str, message: &str) -> Exception {
    let (exc_type, exc_module) = match kind {
        "invalid_input" => ("ValueError", "builtins"),
        "deadline_exceeded" => ("TimeLimitExceeded", "celery.exceptions"),
        "memory_limit" => ("MemoryError", "builtins"),
        "unknown_plugin" | "not_registered" => ("NotRegistered", "celery.exceptions"),
        "plugin_error" => ("PluginError", TASKHOST_MODULE),
        "trapped" => ("TaskTrapped", TASKHOST_MODULE),
        "out_of_fuel" => ("OutOfFuel", TASKHOST_MODULE),
        "output_too_large" => ("OutputTooLarge", TASKHOST_MODULE),
        "event_limit" => ("EventLimitExceeded", TASKHOST_MODULE),
        "host_error" => ("HostError", TASKHOST_MODULE),
        "type_error" => ("TypeError", "builtins"),
        "not_supported" => ("NotImplementedError", "builtins"),
        _ => ("TaskFailed", TASKHOST_MODULE),
    };
    let message = match kind {
        "invalid_input" => message.strip_prefix("invalid input: ").unwrap_or(message),
        _ => message,
    };
    Exception { exc_type, exc_module, message: message.to_owned() }
}

/// What `get()` raises for a revoked task: `TaskRevokedError(reason)`, the reason being
/// `revoked`, `terminated` or `expired` as Celery writes it.
pub fn revoked_exception(reason: &str) -> Exception {
    Exception { exc_type: "TaskRevokedError", exc_module: "celery.exceptions", message: reason.to_owned() }
}

/// The JSON stored at `celery-task-meta-<id>`.
pub fn result_meta(
    state: State,
    task_id: &str,
    result: Value,
    traceback: Option<&str>,
    now: Millis,
) -> String {
    json!({
        "status": state.as_str(),
        "result": result,
        "traceback": traceback,
        "children": [],
        "date_done": if state.is_ready() { json!(format_iso8601(now)) } else { Value::Null },
        "task_id": task_id,
    })
    .to_string()
}

/// The key (and channel) of a task's result.
pub fn result_key(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_python() {
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_encode(b"hi"), "aGk=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
        for text in ["", "a", "ab", "abc", "abcd", "[[1], {}, {\"chain\": null}]"] {
            assert_eq!(base64_decode(&base64_encode(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn iso_times_parse_with_offsets_and_format_like_celery() {
        let t = parse_iso8601("2026-11-23T12:50:16.001428+00:00").unwrap();
        assert_eq!(format_iso8601(t), "2026-11-23T12:50:16.001000+00:00");
        assert_eq!(parse_iso8601("2026-11-23T14:50:16.001+02:00"), Some(t));
        assert_eq!(parse_iso8601("2026-11-23T12:50:16.001Z"), Some(t));
        assert_eq!(parse_iso8601("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_iso8601("2000-02-29 00:00:01"), Some(951_782_401_000));
        assert_eq!(parse_iso8601("yesterday"), None);
        assert_eq!(parse_iso8601("2026-13-01T00:00:00"), None);
    }

    #[test]
    fn priorities_go_to_kombus_lists() {
        assert_eq!(priority_lists("q"), ["q", "q\x06\x163", "q\x06\x166", "q\x06\x169"]);
        assert_eq!(priority_step(0), 0);
        assert_eq!(priority_step(2), 3);
        assert_eq!(priority_step(3), 3);
        assert_eq!(priority_step(9), 9);
    }

    fn message(headers: Value, body: Value) -> Vec<u8> {
        json!({
            "body": base64_encode(body.to_string().as_bytes()),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {"body_encoding": "base64", "priority": 0, "reply_to": "r",
                           "delivery_info": {"exchange": "", "routing_key": "celery"}},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_protocol_2_message_decodes_with_its_workflow() {
        let raw = message(
            json!({"task": "a.one", "id": "t1", "eta": "2026-01-01T00:00:00+00:00", "expires": null,
                   "timelimit": [30, 20], "retries": 2, "group": "g", "group_index": 1, "root_id": "t0"}),
            json!([[1, "x"], {"k": true}, {"callbacks": [{"task": "a.cb", "args": [5], "kwargs": {}, "options": {}}],
                   "errbacks": null, "chain": [{"task": "a.three"}, {"task": "a.two"}], "chord": null}]),
        );
        let m = decode_task(&raw).unwrap();
        assert_eq!((m.id.as_str(), m.task.as_str()), ("t1", "a.one"));
        assert_eq!(m.args, vec![json!(1), json!("x")]);
        assert_eq!(m.kwargs["k"], json!(true));
        assert_eq!(m.eta, parse_iso8601("2026-01-01T00:00:00Z"));
        assert_eq!((m.hard_time_limit, m.soft_time_limit), (Some(30.0), Some(20.0)));
        assert_eq!(m.retries, 2);
        assert_eq!(m.group.as_deref(), Some("g"));
        assert_eq!(m.embed.callbacks[0].task(), "a.cb");
        assert_eq!(m.embed.chain.last().unwrap().task(), "a.two");
        assert_eq!(m.reply_to.as_deref(), Some("r"));
    }

    #[test]
    fn malformed_messages_say_why_and_keep_the_id_when_known() {
        let e = decode_task(b"not json").unwrap_err();
        assert!(e.reason.contains("JSON"), "{e}");
        assert_eq!(e.task_id, None);
        let proto1 = message(json!({}), json!({"task": "a", "id": "x", "args": []}));
        assert!(decode_task(&proto1).unwrap_err().reason.contains("protocol 1"));
        let bad_body = message(json!({"task": "a", "id": "x"}), json!({"no": "list"}));
        let e = decode_task(&bad_body).unwrap_err();
        assert_eq!(e.task_id.as_deref(), Some("x"));
        let pickle = json!({"body": "gAJ9", "content-type": "application/x-python-serialize",
                            "headers": {"task": "a", "id": "p"}, "properties": {"body_encoding": "base64"}});
        let e = decode_task(pickle.to_string().as_bytes()).unwrap_err();
        assert!(e.reason.contains("JSON only"), "{e}");
        assert_eq!(e.task_id.as_deref(), Some("p"));
    }

    #[test]
    fn a_chain_step_is_sent_with_the_parents_result_first() {
        let sig = Signature::from_value(&json!({"task": "a.two", "args": [2], "kwargs": {},
            "options": {"task_id": "t2", "queue": "q2", "priority": 4}, "immutable": false}))
        .unwrap();
        let rest = vec![Signature::from_value(&json!({"task": "a.three"})).unwrap()];
        let mut out = OutgoingTask::from_signature(&sig, vec![json!(10)], "celery", Some("t1"), "t0", "o", 0);
        out.chain = rest;
        let (list, envelope) = out.encode();
        assert_eq!(list, "q2\x06\x166");
        let m = decode_task(envelope.as_bytes()).unwrap();
        assert_eq!((m.id.as_str(), m.task.as_str()), ("t2", "a.two"));
        assert_eq!(m.args, vec![json!(10), json!(2)]);
        assert_eq!(m.parent_id.as_deref(), Some("t1"));
        assert_eq!(m.root_id.as_deref(), Some("t0"));
        assert_eq!(m.embed.chain[0].task(), "a.three");
        let immutable =
            Signature::from_value(&json!({"task": "a.x", "args": [1], "immutable": true})).unwrap();
        let out = OutgoingTask::from_signature(&immutable, vec![json!(10)], "celery", None, "r", "o", 0);
        assert_eq!(out.args, vec![json!(1)]);
        assert_eq!(out.queue, "celery");
    }

    #[test]
    fn failures_map_to_the_exceptions_clients_expect() {
        let e = exception_for("invalid_input", "invalid input: name: must not be empty");
        assert_eq!(
            (e.exc_type, e.exc_module, e.message.as_str()),
            ("ValueError", "builtins", "name: must not be empty")
        );
        assert_eq!(exception_for("deadline_exceeded", "x").exc_type, "TimeLimitExceeded");
        assert_eq!(exception_for("deadline_exceeded", "x").exc_module, "celery.exceptions");
        assert_eq!(exception_for("plugin_error", "x").exc_module, "taskhost.exceptions");
        let meta: Value =
            serde_json::from_str(&result_meta(State::Failure, "t", e.to_value(), None, 0)).unwrap();
        assert_eq!(meta["status"], "FAILURE");
        assert_eq!(meta["result"]["exc_message"], json!(["name: must not be empty"]));
        assert_eq!(meta["date_done"], "1970-01-01T00:00:00.000000+00:00");
        let started: Value =
            serde_json::from_str(&result_meta(State::Started, "t", json!({}), None, 0)).unwrap();
        assert_eq!(started["date_done"], Value::Null);
    }
}
