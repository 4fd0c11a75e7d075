//! `hello`: the smallest useful taskhost plugin, and the one tests and demos use.
//!
//! Input: `{"name": string, "spin_ms"?: u64, "fail"?: string}`. It greets `name`. With `spin_ms`
//! it computes for that many milliseconds (a deterministic integer hash chain), reporting
//! progress every 10% and stopping early when the host says `cancelled()`. With `fail` it returns
//! that message as a plugin error.

use serde::{Deserialize, Serialize};
use taskhost_sdk::{Context, Level, Plugin, TaskError, export_plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    name: String,
    #[serde(default)]
    spin_ms: Option<u64>,
    #[serde(default)]
    fail: Option<String>,
}

#[derive(Serialize)]
pub struct Output {
    greeting: String,
    /// How many hash rounds the spin computed (0 without `spin_ms`).
    rounds: u64,
    /// The final value of the hash chain, so the work cannot be optimised away.
    digest: u64,
}

pub struct Hello;

impl Plugin for Hello {
    type Input = Input;
    type Output = Output;

    fn summary() -> &'static str {
        "Greets someone; optionally computes for a while or fails on request"
    }

    fn input_schema() -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "spin_ms": {"type": "integer", "minimum": 0},
                "fail": {"type": "string"}
            }
        })
    }

    fn run(ctx: &Context, input: Input) -> Result<Output, TaskError> {
        if input.name.trim().is_empty() {
            return Err(TaskError::invalid_input("name", "must not be empty"));
        }
        ctx.log(Level::Info, format!("greeting {}", input.name));
        let (rounds, digest) = match input.spin_ms {
            Some(ms) => spin(ctx, ms)?,
            None => (0, 0),
        };
        if let Some(message) = input.fail {
            return Err(TaskError::Failed(message));
        }
        ctx.progress(100.0, "done");
        Ok(Output { greeting: format!("Hello, {}!", input.name), rounds, digest })
    }
}

/// Computes for `ms` milliseconds of wall-clock time, reporting progress at each tenth.
fn spin(ctx: &Context, ms: u64) -> Result<(u64, u64), TaskError> {
    let start = std::time::Instant::now();
    let budget = std::time::Duration::from_millis(ms);
    let mut digest: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rounds = 0u64;
    let mut reported_tenth = 0u32;
    loop {
        for _ in 0..10_000 {
            // splitmix64 step: cheap, deterministic, not foldable by the optimiser.
            digest = digest.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = digest;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            digest ^= z ^ (z >> 31);
        }
        rounds += 10_000;
        ctx.check_cancelled()?;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return Ok((rounds, digest));
        }
        let tenth = (elapsed.as_millis() * 10 / budget.as_millis().max(1)) as u32;
        if tenth > reported_tenth {
            reported_tenth = tenth;
            ctx.progress(tenth as f32 * 10.0, format!("spinning: {} rounds", rounds));
        }
    }
}

export_plugin!(Hello);
