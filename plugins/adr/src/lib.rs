//! `adr`: Architecture Decision Records, generated and analysed.
//!
//! Two tasks on the `adr` queue, after the ADR notes (adr-queue-visibility.md), whose Celery
//! tasks they replace:
//!
//! - `generate_adr` (the default; Celery `generate_adr_task`) writes a complete record in
//!   Michael Nygard's format as adr-tools writes it, or in MADR 4.0.0, from a title, a context,
//!   the options, the decision drivers and the viewpoints of the people consulted (personas).
//!   The file name follows adr-tools' numbering and slug rules; a superseded record gets the
//!   reverse link and status, exactly as `adr new -s` writes them. The text is a pure function of
//!   the input: no clock, no randomness, no model.
//! - `analyze_adrs` checks a folder of records (passed inline as `{file_name, content}` pairs):
//!   missing sections, invalid statuses, broken or one-sided supersede links, numbering gaps and
//!   duplicates; and writes the table of contents byte for byte as `adr generate toc` would.
//!
//! The work is in plain modules, tested natively and against the real tools (adr-tools,
//! markdownlint-cli with MADR's configuration): [`naming`] (file names and numbers), [`text`]
//! (safe Markdown and YAML), [`request`] (inputs and their checks), [`decision`] (the decision
//! model), [`render`] (the two formats), [`supersede`] (amending the old record), [`parse`]
//! (reading records), [`analysis`] (the checks) and [`toc`] (`adr list`, `adr generate toc`).
//! This file is the glue: it checks cancellation between units of work and reports progress and
//! events. README.md describes the input, the output and the events.

pub mod analysis;
pub mod decision;
pub mod naming;
pub mod parse;
pub mod render;
pub mod request;
pub mod supersede;
pub mod text;
pub mod toc;

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use taskhost_sdk::serde_json::{self, Value, json};
use taskhost_sdk::{Context, Level, Plugin, TaskError, export_plugin};

use crate::analysis::{Issue, Numbering, RecordSummary, Severity};
use crate::decision::{Argument, Decision, DriverLine};
use crate::render::{Draft, Section};
use crate::request::{AnalyzeInput, Format, GenerateInput, GenerateRequest, Status};

/// The task that analyses a folder of records.
pub const ANALYZE_TASK: &str = "analyze_adrs";
/// At most this many issues are emitted as `warning` events; the rest are counted in one more.
pub const MAX_WARNING_EVENTS: usize = 200;
/// At most this many issues are listed in the result (all are counted): a folder with more has
/// a systematic fault that the first ones show, and the list would outgrow the output limit.
pub const MAX_ISSUES_LISTED: usize = 5_000;

/// The generated record.
#[derive(Debug, Serialize)]
pub struct RecordOutput {
    /// `0003-use-postgresql.md`.
    pub file_name: String,
    /// 3.
    pub number: u32,
    /// The title.
    pub title: String,
    /// `nygard` or `madr`.
    pub format: Format,
    /// The status.
    pub status: Status,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The Markdown text.
    pub content: String,
    /// How other records' links name it.
    pub link_title: String,
    /// Its line in `adr generate toc`.
    pub toc_entry: String,
}

/// The superseded record, amended.
#[derive(Debug, Serialize)]
pub struct SupersededOutput {
    /// Its file name.
    pub file_name: String,
    /// How the new record's link names it.
    pub link_title: String,
    /// Its amended text, when its content was given.
    pub content: Option<String>,
}

/// One section as generated.
#[derive(Debug, Serialize)]
pub struct SectionOutput {
    /// `context_and_problem_statement`, …
    pub section: Section,
    /// `Context and Problem Statement`, …
    pub heading: &'static str,
    /// Length of its text in characters.
    pub chars: usize,
}

/// An option with its arguments and measures.
#[derive(Debug, Serialize)]
pub struct OptionOutput {
    /// Its name.
    pub name: String,
    /// True for the chosen one.
    pub chosen: bool,
    /// Good, Neutral and Bad arguments.
    pub arguments: Vec<Argument>,
    /// Weighted score (0-10), with a matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted_score: Option<f64>,
    /// Personas for minus personas against.
    pub net_support: i64,
}

/// What one persona contributed.
#[derive(Debug, Serialize)]
pub struct Viewpoint {
    /// 0-based.
    pub index: usize,
    /// Number of personas.
    pub total: usize,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Stance.
    pub stance: String,
    /// The option favoured.
    pub favours: Option<String>,
    /// Options opposed.
    pub opposes: Vec<String>,
    /// Drivers this persona raised (their concerns).
    pub drivers: Vec<String>,
    /// Consequences that stem from this persona's viewpoint.
    pub consequences: Vec<String>,
}

/// `generate_adr` result.
#[derive(Debug, Serialize)]
pub struct GenerateOutput {
    /// The new record.
    pub record: RecordOutput,
    /// The superseded record, amended.
    pub superseded: Option<SupersededOutput>,
    /// The sections, in order.
    pub sections: Vec<SectionOutput>,
    /// The choice and its reason.
    pub decision: Decision,
    /// The Decision Drivers list.
    pub drivers: Vec<DriverLine>,
    /// The options.
    pub options: Vec<OptionOutput>,
    /// Consequences of the choice.
    pub consequences: Vec<Argument>,
    /// What each persona contributed.
    pub viewpoints: Vec<Viewpoint>,
}

/// `analyze_adrs` result.
#[derive(Debug, Serialize)]
pub struct AnalyzeOutput {
    /// Number of files given.
    pub record_count: usize,
    /// Per-record findings, in the order given.
    pub records: Vec<RecordSummary>,
    /// The issues, in the order found (at most [`MAX_ISSUES_LISTED`]).
    pub issues: Vec<Issue>,
    /// Issues found but not listed, beyond [`MAX_ISSUES_LISTED`].
    pub issues_not_listed: usize,
    /// Issues per kind.
    pub issue_counts: BTreeMap<&'static str, usize>,
    /// Errors among the issues.
    pub errors: usize,
    /// Warnings among the issues.
    pub warnings: usize,
    /// The numbering.
    pub numbering: Numbering,
    /// `adr list`'s output lines.
    pub list: Vec<String>,
    /// `adr generate toc`'s output.
    pub toc: String,
}

/// The plugin.
pub struct Adr;

impl Plugin for Adr {
    type Input = Value;
    type Output = Value;

    fn summary() -> &'static str {
        "Architecture Decision Records: generates Nygard (adr-tools) or MADR 4 records and analyses a folder of them"
    }

    fn input_schema() -> Value {
        input_schema()
    }

    fn run(ctx: &Context, input: Value) -> Result<Value, TaskError> {
        let output = if ctx.task().name == ANALYZE_TASK {
            serde_json::to_value(analyze(ctx, decode(input)?)?)
        } else {
            serde_json::to_value(generate(ctx, decode(input)?)?)
        };
        output.map_err(|e| TaskError::failed(format!("the result is not serialisable: {e}")))
    }
}

/// Deserialises a task's input, naming the path of the field at fault.
pub fn decode<T: DeserializeOwned>(input: Value) -> Result<T, TaskError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            TaskError::InvalidInput(inner.to_string())
        } else {
            TaskError::InvalidInput(format!("{path}: {inner}"))
        }
    })
}

/// Everything `generate_adr` computes, without a host: used by `run` and by the tests.
pub struct Generated {
    /// The result.
    pub output: GenerateOutput,
    /// A warning about the stated decision, if the evidence favours another option.
    pub decision_warning: Option<String>,
}

fn generate(ctx: &Context, input: GenerateInput) -> Result<GenerateOutput, TaskError> {
    let request = input.validate()?;
    let personas = request.personas.len();
    ctx.progress(
        0.0,
        format!("Generating ADR with {personas} persona{}", if personas == 1 { "" } else { "s" }),
    );
    ctx.log(Level::Info, format!("generating {} ({:?})", request.file_name, request.format));

    let draft = Draft::new(&request);
    let viewpoints = viewpoints(&draft);
    for viewpoint in &viewpoints {
        ctx.check_cancelled()?;
        ctx.emit("persona_viewpoint", viewpoint);
        ctx.progress(
            5.0 + 25.0 * (viewpoint.index + 1) as f32 / personas as f32,
            format!("Viewpoint of {} folded in", viewpoint.name),
        );
    }
    ctx.emit(
        "decision_made",
        &json!({
            "chosen_option": draft.decision.chosen_option,
            "basis": draft.decision.basis,
            "rationale": draft.decision.rationale,
            "weighted_scores": draft.decision.weighted_scores,
            "net_support": draft.decision.net_support,
        }),
    );
    if let Some(message) = decision_warning(&draft) {
        ctx.emit("warning", &json!({"kind": "decision_against_evidence", "message": message}));
    }

    let sections = draft.sections();
    let mut texts = Vec::with_capacity(sections.len());
    for (index, section) in sections.iter().enumerate() {
        ctx.check_cancelled()?;
        let text = draft.render(*section);
        ctx.emit(
            "section_generated",
            &json!({
                "section": section,
                "heading": section.heading(),
                "index": index,
                "total": sections.len(),
                "chars": text.chars().count(),
                "format": request.format,
            }),
        );
        ctx.progress(
            30.0 + 60.0 * (index + 1) as f32 / sections.len() as f32,
            format!("{} written", section.heading()),
        );
        texts.push(text);
    }

    let output = assemble(&draft, &sections, &texts);
    if let Some(superseded) = &output.superseded {
        ctx.emit(
            "supersede_linked",
            &json!({
                "record": output.record.file_name,
                "supersedes": superseded.file_name,
                "amended": superseded.content.is_some(),
            }),
        );
        if request.status == Status::Proposed {
            ctx.emit(
                "warning",
                &json!({
                    "kind": "proposed_supersedes",
                    "message": format!(
                        "{} is marked superseded although {} is only proposed (as `adr new -s` does)",
                        superseded.file_name, output.record.file_name
                    ),
                }),
            );
        }
    }
    ctx.progress(100.0, format!("{} generated", output.record.file_name));
    Ok(output)
}

/// The whole `generate_adr` computation in one call, for tests and tools.
pub fn generate_record(request: &GenerateRequest) -> Generated {
    let draft = Draft::new(request);
    let sections = draft.sections();
    let texts: Vec<String> = sections.iter().map(|s| draft.render(*s)).collect();
    Generated { decision_warning: decision_warning(&draft), output: assemble(&draft, &sections, &texts) }
}

fn decision_warning(draft: &Draft) -> Option<String> {
    draft.decision.evidence_favours.as_ref().map(|best| {
        format!(
            "the stated decision \"{}\" is not the one the evidence favours (\"{best}\")",
            draft.decision.chosen_option
        )
    })
}

fn viewpoints(draft: &Draft) -> Vec<Viewpoint> {
    let request = draft.request;
    let total = request.personas.len();
    request
        .personas
        .iter()
        .enumerate()
        .map(|(index, persona)| Viewpoint {
            index,
            total,
            name: persona.name.clone(),
            role: persona.role.clone(),
            stance: persona.stance.clone(),
            favours: persona.favours.map(|f| request.options[f].name.clone()),
            opposes: persona.opposes.iter().map(|&o| request.options[o].name.clone()).collect(),
            drivers: draft
                .drivers
                .iter()
                .filter(|d| {
                    d.source != decision::DriverSource::PersonaViewpoint
                        && d.raised_by.contains(&persona.label())
                })
                .map(|d| d.text.clone())
                .collect(),
            consequences: draft
                .consequences
                .iter()
                .filter(|c| c.persona.as_deref() == Some(persona.name.as_str()))
                .map(Argument::sentence)
                .collect(),
        })
        .collect()
}

fn assemble(draft: &Draft, sections: &[Section], texts: &[String]) -> GenerateOutput {
    let request = draft.request;
    let content = Draft::assemble(texts);
    let first_line = content.split('\n').next().unwrap_or("");
    let toc_entry = format!("* [{}]({})", parse::adr_tools_title(first_line), request.file_name);
    let link_title = draft.link_title();
    let superseded = request.supersedes.as_ref().map(|old| SupersededOutput {
        file_name: old.file_name.clone(),
        link_title: old.link_title.clone(),
        content: old.content.as_ref().map(|text| {
            supersede::amend_superseded(&old.file_name, text, request.number, &request.file_name, &link_title)
        }),
    });
    let weighted = draft.decision.weighted_scores.as_ref();
    GenerateOutput {
        record: RecordOutput {
            file_name: request.file_name.clone(),
            number: request.number,
            title: request.title.clone(),
            format: request.format,
            status: request.status,
            date: request.date.clone(),
            content,
            link_title,
            toc_entry,
        },
        superseded,
        sections: sections
            .iter()
            .zip(texts)
            .map(|(s, t)| SectionOutput { section: *s, heading: s.heading(), chars: t.chars().count() })
            .collect(),
        decision: draft.decision.clone(),
        drivers: draft.drivers.clone(),
        options: request
            .options
            .iter()
            .enumerate()
            .map(|(j, o)| OptionOutput {
                name: o.name.clone(),
                chosen: j == draft.decision.chosen,
                arguments: draft.arguments[j].clone(),
                weighted_score: weighted.map(|w| w[j]),
                net_support: draft.decision.net_support[j],
            })
            .collect(),
        consequences: draft.consequences.clone(),
        viewpoints: viewpoints(draft),
    }
}

fn analyze(ctx: &Context, input: AnalyzeInput) -> Result<AnalyzeOutput, TaskError> {
    let request = input.validate()?;
    let total = request.records.len();
    ctx.progress(0.0, format!("Analysing {total} record{}", if total == 1 { "" } else { "s" }));
    let mut warnings = WarningEvents::default();

    let mut parsed = Vec::with_capacity(total);
    let mut summaries = Vec::with_capacity(total);
    let mut issues = Vec::new();
    for (i, record) in request.records.iter().enumerate() {
        if i % 64 == 0 {
            ctx.check_cancelled()?;
            ctx.progress(70.0 * i as f32 / total.max(1) as f32, format!("Checked {i} of {total} records"));
        }
        let record = parse::parse_record(&record.file_name, &record.content);
        let (summary, found) = analysis::check_record(&record);
        warnings.emit_all(ctx, &found);
        issues.extend(found);
        parsed.push(record);
        summaries.push(summary);
    }
    ctx.emit(
        "analysis_stage",
        &json!({"stage": "records_checked", "records": total, "issues": issues.len()}),
    );

    ctx.check_cancelled()?;
    let found = analysis::check_links(&parsed, &mut summaries);
    warnings.emit_all(ctx, &found);
    let links: usize = summaries.iter().map(|s| s.links.len()).sum();
    ctx.emit("analysis_stage", &json!({"stage": "links_checked", "links": links, "issues": found.len()}));
    issues.extend(found);
    ctx.progress(80.0, "Links checked");

    ctx.check_cancelled()?;
    let names = request.records.iter().map(|r| r.file_name.as_str());
    let (numbering, found) = analysis::check_numbering(names.clone());
    warnings.emit_all(ctx, &found);
    ctx.emit(
        "analysis_stage",
        &json!({
            "stage": "numbering_checked",
            "first": numbering.first,
            "last": numbering.last,
            "gaps": numbering.gaps.len(),
            "duplicates": numbering.duplicates.len(),
            "issues": found.len(),
        }),
    );
    issues.extend(found);
    ctx.progress(90.0, "Numbering checked");

    ctx.check_cancelled()?;
    let output = finish(&request, summaries, issues, numbering);
    ctx.emit("analysis_stage", &json!({"stage": "toc_generated", "entries": output.list.len()}));
    warnings.finish(ctx);
    ctx.emit(
        "analysis_summary",
        &json!({
            "records": output.record_count,
            "issues": output.issues.len(),
            "errors": output.errors,
            "warnings": output.warnings,
            "issue_counts": output.issue_counts,
        }),
    );
    ctx.progress(100.0, format!("{} issues in {total} records", output.errors + output.warnings));
    Ok(output)
}

/// The whole `analyze_adrs` computation in one call, for tests and tools.
pub fn analyze_records(request: &request::AnalyzeRequest) -> AnalyzeOutput {
    let parsed: Vec<_> =
        request.records.iter().map(|r| parse::parse_record(&r.file_name, &r.content)).collect();
    let mut summaries = Vec::with_capacity(parsed.len());
    let mut issues = Vec::new();
    for record in &parsed {
        let (summary, found) = analysis::check_record(record);
        summaries.push(summary);
        issues.extend(found);
    }
    issues.extend(analysis::check_links(&parsed, &mut summaries));
    let (numbering, found) = analysis::check_numbering(request.records.iter().map(|r| r.file_name.as_str()));
    issues.extend(found);
    finish(request, summaries, issues, numbering)
}

fn finish(
    request: &request::AnalyzeRequest,
    records: Vec<RecordSummary>,
    mut issues: Vec<Issue>,
    numbering: Numbering,
) -> AnalyzeOutput {
    let mut issue_counts = BTreeMap::new();
    for issue in &issues {
        *issue_counts.entry(issue.kind.name()).or_insert(0) += 1;
    }
    let errors = issues.iter().filter(|i| i.severity == Severity::Error).count();
    let list = toc::adr_list(request.records.iter().map(|r| r.file_name.as_str()))
        .into_iter()
        .map(|name| format!("{}/{name}", request.adr_dir))
        .collect();
    let toc = toc::generate_toc(
        request.records.iter().map(|r| (r.file_name.as_str(), r.content.as_str())),
        &request.toc_intro,
        &request.toc_outro,
        &request.toc_link_prefix,
    );
    let warnings = issues.len() - errors;
    let issues_not_listed = issues.len().saturating_sub(MAX_ISSUES_LISTED);
    issues.truncate(MAX_ISSUES_LISTED);
    AnalyzeOutput {
        record_count: request.records.len(),
        records,
        warnings,
        errors,
        issues,
        issues_not_listed,
        issue_counts,
        numbering,
        list,
        toc,
    }
}

/// Emits issues as `warning` events, up to [`MAX_WARNING_EVENTS`], then counts the rest.
#[derive(Default)]
struct WarningEvents {
    emitted: usize,
    held_back: usize,
}

impl WarningEvents {
    fn emit_all(&mut self, ctx: &Context, issues: &[Issue]) {
        for issue in issues {
            if self.emitted < MAX_WARNING_EVENTS {
                ctx.emit("warning", issue);
                self.emitted += 1;
            } else {
                self.held_back += 1;
            }
        }
    }

    fn finish(&self, ctx: &Context) {
        if self.held_back > 0 {
            ctx.emit(
                "warning",
                &json!({
                    "kind": "more_issues",
                    "severity": "warning",
                    "message": format!("{} more issues are in the result's `issues`", self.held_back),
                }),
            );
        }
    }
}

/// The input schemas of both tasks, for `describe`.
fn input_schema() -> Value {
    let text_list = json!({"type": "array", "items": {"type": "string"}, "maxItems": request::MAX_ITEMS});
    json!({
        "tasks": {
            "generate_adr": {
                "type": "object",
                "required": ["title", "context", "options", "date"],
                "additionalProperties": false,
                "properties": {
                    "title": {"type": "string", "maxLength": request::MAX_LINE_CHARS},
                    "context": {"type": "string"},
                    "options": {"type": "array", "minItems": 1, "maxItems": request::MAX_ITEMS, "items": {
                        "oneOf": [{"type": "string"}, {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"}, "description": {"type": "string"},
                            "pros": text_list, "cons": text_list, "neutral": text_list,
                            "scores": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 10}}
                        }}]
                    }},
                    "decision_drivers": {"type": "array", "maxItems": request::MAX_ITEMS, "items": {
                        "oneOf": [{"type": "string"}, {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"}, "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}
                        }}]
                    }},
                    "personas": {"type": "array", "maxItems": request::MAX_ITEMS, "items": {
                        "type": "object", "required": ["name", "role", "stance"], "properties": {
                            "name": {"type": "string"}, "role": {"type": "string"}, "stance": {"type": "string"},
                            "favours": {"type": "string"}, "opposes": text_list, "concerns": text_list
                        }
                    }},
                    "status": {"enum": ["proposed", "accepted", "rejected", "deprecated"], "default": "accepted"},
                    "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                    "supersedes": {"type": "object", "required": ["file_name"], "properties": {
                        "file_name": {"type": "string"}, "content": {"type": "string"}, "title": {"type": "string"}
                    }},
                    "format": {"enum": ["nygard", "madr"], "default": "nygard"},
                    "decision": {"type": "string"},
                    "decision_rationale": {"type": "string"},
                    "decision_details": {"type": "string"},
                    "confirmation": {"type": "string"},
                    "more_information": {"type": "string"},
                    "decision_makers": text_list,
                    "informed": text_list,
                    "number": {"type": "integer", "minimum": 0, "maximum": 999_999},
                    "existing_files": {"type": "array", "items": {"type": "string"}, "maxItems": request::MAX_RECORDS}
                }
            },
            "analyze_adrs": {
                "type": "object",
                "required": ["records"],
                "additionalProperties": false,
                "properties": {
                    "records": {"type": "array", "maxItems": request::MAX_RECORDS, "items": {
                        "type": "object", "required": ["file_name", "content"], "properties": {
                            "file_name": {"type": "string"}, "content": {"type": "string"}
                        }
                    }},
                    "adr_dir": {"type": "string", "default": "doc/adr"},
                    "toc_intro": {"type": "string"},
                    "toc_outro": {"type": "string"},
                    "toc_link_prefix": {"type": "string"}
                }
            }
        }
    })
}

export_plugin!(Adr);
