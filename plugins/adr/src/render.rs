//! Writing a record, section by section, in Nygard's format (as adr-tools writes it) or MADR 4.
//!
//! **Nygard** (Michael Nygard, "Documenting Architecture Decisions", 2011; adr-tools 3.0.0's
//! `template.md`, byte for byte in its fixed lines):
//!
//! ```text
//! # NUMBER. TITLE
//!
//! Date: DATE
//!
//! ## Status
//!
//! STATUS                                   (adr-tools writes `Accepted`)
//!
//! Supersedes [N. Old title](000N-old.md)   (as `adr new -s N` adds it)
//!
//! ## Context
//! ## Decision
//! ## Consequences
//! ```
//!
//! Nygard's format has no sections for drivers, options or viewpoints, so they go where his
//! article puts them: the forces (drivers, viewpoints), the options with their pros and cons and
//! the decision matrix in Context; "We will …" in Decision; "what becomes easier or more
//! difficult to do and any risks" in Consequences.
//!
//! **MADR 4.0.0** (`template/adr-template.md`): YAML front matter (`status`, `date`,
//! `decision-makers`, `consulted` = the personas, `informed`), `# Title` (no number, MADR
//! ADR-0002), `## Context and Problem Statement`, `## Decision Drivers`, `## Considered Options`,
//! `## Decision Outcome` with `Chosen option: "…", because …`, `### Consequences`, `###
//! Confirmation`, `## Pros and Cons of the Options` with a `###` per option, `## More
//! Information`. Optional sections are left out when there is nothing to put in them; lists use
//! `*` (MADR ADR-0011). The decision matrix and the supersede link go in More Information (MADR
//! ADR-0009).
//!
//! Both are checked against the real tools in `tests/oracle_*.rs`: adr-tools lists, indexes and
//! links generated records like its own, and markdownlint-cli with MADR's configuration passes.

use serde::Serialize;

use crate::decision::{self, Argument, Decision, DriverLine, number};
use crate::parse::madr_link_title;
use crate::request::{Format, GenerateRequest, Status};
use crate::text::{table_cell, yaml_scalar};

/// A section of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// MADR's YAML front matter.
    FrontMatter,
    /// The `#` title (and Nygard's `Date:` line).
    Title,
    /// Nygard: `## Status`.
    Status,
    /// Nygard: `## Context`.
    Context,
    /// Nygard: `## Decision`.
    Decision,
    /// Nygard: `## Consequences`; MADR: `### Consequences`.
    Consequences,
    /// MADR: `## Context and Problem Statement`.
    ContextAndProblemStatement,
    /// MADR: `## Decision Drivers`.
    DecisionDrivers,
    /// MADR: `## Considered Options`.
    ConsideredOptions,
    /// MADR: `## Decision Outcome`.
    DecisionOutcome,
    /// MADR: `### Confirmation`.
    Confirmation,
    /// MADR: `## Pros and Cons of the Options`.
    ProsAndConsOfTheOptions,
    /// MADR: `## More Information`.
    MoreInformation,
}

impl Section {
    /// The heading as the record shows it (`Front matter` and `Title` for the parts without one).
    pub fn heading(self) -> &'static str {
        match self {
            Section::FrontMatter => "Front matter",
            Section::Title => "Title",
            Section::Status => "Status",
            Section::Context => "Context",
            Section::Decision => "Decision",
            Section::Consequences => "Consequences",
            Section::ContextAndProblemStatement => "Context and Problem Statement",
            Section::DecisionDrivers => "Decision Drivers",
            Section::ConsideredOptions => "Considered Options",
            Section::DecisionOutcome => "Decision Outcome",
            Section::Confirmation => "Confirmation",
            Section::ProsAndConsOfTheOptions => "Pros and Cons of the Options",
            Section::MoreInformation => "More Information",
        }
    }
}

/// Everything a record says, worked out before any text is written.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    /// The request.
    pub request: &'a GenerateRequest,
    /// The choice and its reason.
    pub decision: Decision,
    /// The Decision Drivers list.
    pub drivers: Vec<DriverLine>,
    /// Arguments for and against each option.
    pub arguments: Vec<Vec<Argument>>,
    /// Consequences of the choice.
    pub consequences: Vec<Argument>,
}

impl<'a> Draft<'a> {
    /// Works out the decision, drivers, arguments and consequences.
    pub fn new(request: &'a GenerateRequest) -> Self {
        let decision = decision::decide(request);
        let consequences = decision::consequences(request, &decision);
        Draft {
            request,
            drivers: decision::driver_lines(request),
            arguments: decision::option_arguments(request),
            decision,
            consequences,
        }
    }

    /// How other records' links name this one: `3. Title` (Nygard, as adr-tools' `_adr_title`
    /// reads it) or `ADR-0003: Title` (MADR).
    pub fn link_title(&self) -> String {
        match self.request.format {
            Format::Nygard => format!("{}. {}", self.request.number, self.request.title),
            Format::Madr => madr_link_title(self.request.number, &self.request.title),
        }
    }

    /// The sections this record has, in order.
    pub fn sections(&self) -> Vec<Section> {
        match self.request.format {
            Format::Nygard => {
                vec![
                    Section::Title,
                    Section::Status,
                    Section::Context,
                    Section::Decision,
                    Section::Consequences,
                ]
            }
            Format::Madr => {
                let mut sections =
                    vec![Section::FrontMatter, Section::Title, Section::ContextAndProblemStatement];
                if !self.drivers.is_empty() {
                    sections.push(Section::DecisionDrivers);
                }
                sections.extend([Section::ConsideredOptions, Section::DecisionOutcome]);
                if !self.consequences.is_empty() {
                    sections.push(Section::Consequences);
                }
                if !self.request.confirmation.is_empty() {
                    sections.push(Section::Confirmation);
                }
                if self.has_pros_and_cons() {
                    sections.push(Section::ProsAndConsOfTheOptions);
                }
                if self.has_more_information() {
                    sections.push(Section::MoreInformation);
                }
                sections
            }
        }
    }

    /// One section's text, without a trailing newline.
    pub fn render(&self, section: Section) -> String {
        let r = self.request;
        match (r.format, section) {
            (_, Section::FrontMatter) => self.front_matter(),
            (Format::Nygard, Section::Title) => format!("# {}. {}\n\nDate: {}", r.number, r.title, r.date),
            (Format::Madr, Section::Title) => format!("# {}", r.title),
            (_, Section::Status) => self.nygard_status(),
            (_, Section::Context) => self.nygard_context(),
            (_, Section::Decision) => self.nygard_decision(),
            (Format::Nygard, Section::Consequences) => self.nygard_consequences(),
            (Format::Madr, Section::Consequences) => {
                format!("### Consequences\n\n{}", bullets(self.consequences.iter().map(Argument::sentence)))
            }
            (_, Section::ContextAndProblemStatement) => {
                format!("## Context and Problem Statement\n\n{}", r.context)
            }
            (_, Section::DecisionDrivers) => {
                format!("## Decision Drivers\n\n{}", bullets(self.drivers.iter().map(DriverLine::sentence)))
            }
            (_, Section::ConsideredOptions) => {
                format!("## Considered Options\n\n{}", bullets(r.options.iter().map(|o| o.name.clone())))
            }
            (_, Section::DecisionOutcome) => {
                let mut text = format!(
                    "## Decision Outcome\n\nChosen option: \"{}\", because {}.",
                    self.decision.chosen_option, self.decision.rationale
                );
                push_block(&mut text, &r.decision_details);
                text
            }
            (_, Section::Confirmation) => format!("### Confirmation\n\n{}", r.confirmation),
            (_, Section::ProsAndConsOfTheOptions) => self.madr_pros_and_cons(),
            (_, Section::MoreInformation) => self.madr_more_information(),
        }
    }

    /// The whole record: the sections joined by blank lines, ending in one newline.
    pub fn assemble(parts: &[String]) -> String {
        let mut record = parts.join("\n\n");
        record.push('\n');
        record
    }

    fn front_matter(&self) -> String {
        let r = self.request;
        let mut lines =
            vec!["---".to_owned(), format!("status: {}", r.status.as_str()), format!("date: {}", r.date)];
        if !r.decision_makers.is_empty() {
            lines.push(format!("decision-makers: {}", yaml_scalar(&r.decision_makers.join(", "))));
        }
        if !r.personas.is_empty() {
            let consulted: Vec<String> = r.personas.iter().map(|p| p.label()).collect();
            lines.push(format!("consulted: {}", yaml_scalar(&consulted.join(", "))));
        }
        if !r.informed.is_empty() {
            lines.push(format!("informed: {}", yaml_scalar(&r.informed.join(", "))));
        }
        lines.push("---".to_owned());
        lines.join("\n")
    }

    fn nygard_status(&self) -> String {
        let mut text = format!("## Status\n\n{}", self.request.status.capitalised());
        if let Some(old) = &self.request.supersedes {
            text.push_str(&format!("\n\nSupersedes [{}]({})", old.link_title, old.file_name));
        }
        text
    }

    fn nygard_context(&self) -> String {
        let r = self.request;
        let mut text = format!("## Context\n\n{}", r.context);
        if !self.drivers.is_empty() {
            text.push_str("\n\nThe decision is driven by:\n\n");
            text.push_str(&bullets(self.drivers.iter().map(DriverLine::sentence)));
        }
        text.push_str("\n\nThe options considered:\n\n");
        let options: Vec<String> = r
            .options
            .iter()
            .zip(&self.arguments)
            .map(|(option, arguments)| {
                let description = crate::text::inline(&option.description);
                let mut item = if description.is_empty() {
                    option.name.clone()
                } else {
                    format!("{}: {description}", option.name)
                };
                for argument in arguments {
                    item.push_str(&format!("\n  * {}", argument.sentence()));
                }
                item
            })
            .collect();
        text.push_str(&bullets(options));
        if let Some(matrix) = self.matrix() {
            text.push_str("\n\n");
            text.push_str(&matrix);
        }
        text
    }

    fn nygard_decision(&self) -> String {
        let r = self.request;
        let (option, because) = (&self.decision.chosen_option, &self.decision.rationale);
        let sentence = match r.status {
            Status::Accepted => format!("We will go with \"{option}\", because {because}."),
            Status::Proposed => format!("We propose to go with \"{option}\", because {because}."),
            Status::Rejected => {
                format!(
                    "It was proposed to go with \"{option}\", because {because}. The proposal was rejected."
                )
            }
            Status::Deprecated => {
                format!("We went with \"{option}\", because {because}. This decision is deprecated.")
            }
        };
        let mut text = format!("## Decision\n\n{sentence}");
        push_block(&mut text, &r.decision_details);
        if !r.confirmation.is_empty() {
            text.push_str("\n\nCompliance will be confirmed as follows:");
            push_block(&mut text, &r.confirmation);
        }
        text
    }

    fn nygard_consequences(&self) -> String {
        let mut text = "## Consequences".to_owned();
        if self.consequences.is_empty() {
            text.push_str(
                "\n\nNo consequences were recorded with this decision; add them as they become clear.",
            );
        } else {
            text.push_str("\n\n");
            text.push_str(&bullets(self.consequences.iter().map(Argument::sentence)));
        }
        push_block(&mut text, &self.request.more_information);
        text
    }

    fn has_pros_and_cons(&self) -> bool {
        self.request
            .options
            .iter()
            .zip(&self.arguments)
            .any(|(o, a)| !o.description.is_empty() || !a.is_empty())
    }

    fn madr_pros_and_cons(&self) -> String {
        let mut text = "## Pros and Cons of the Options".to_owned();
        for (option, arguments) in self.request.options.iter().zip(&self.arguments) {
            if option.description.is_empty() && arguments.is_empty() {
                continue;
            }
            text.push_str(&format!("\n\n### {}", option.name));
            push_block(&mut text, &option.description);
            if !arguments.is_empty() {
                text.push_str("\n\n");
                text.push_str(&bullets(arguments.iter().map(Argument::sentence)));
            }
        }
        text
    }

    fn has_more_information(&self) -> bool {
        self.matrix().is_some()
            || self.request.supersedes.is_some()
            || !self.request.more_information.is_empty()
    }

    fn madr_more_information(&self) -> String {
        let r = self.request;
        let mut text = "## More Information".to_owned();
        if let Some(old) = &r.supersedes {
            text.push_str(&format!("\n\nSupersedes [{}]({})", old.link_title, old.file_name));
        }
        if let Some(matrix) = self.matrix() {
            text.push_str("\n\n");
            text.push_str(&matrix);
        }
        push_block(&mut text, &r.more_information);
        text
    }

    /// The weighted decision matrix as a Markdown table, when the options are scored.
    fn matrix(&self) -> Option<String> {
        let r = self.request;
        let totals = self.decision.weighted_scores.as_ref()?;
        let mut rows = vec![
            "The weighted decision matrix (scores from 0 to 10; the weighted score is the weighted mean):"
                .to_owned(),
            String::new(),
        ];
        let names: Vec<String> = r.options.iter().map(|o| table_cell(&o.name)).collect();
        rows.push(format!("| Decision driver | Weight | {} |", names.join(" | ")));
        rows.push(format!("| --- | ---: |{}", " ---: |".repeat(names.len())));
        for (i, driver) in r.drivers.iter().enumerate() {
            let scores: Vec<String> =
                r.options.iter().map(|o| o.scores.as_ref().map_or(String::new(), |s| number(s[i]))).collect();
            rows.push(format!(
                "| {} | {} | {} |",
                table_cell(&driver.name),
                number(driver.weight),
                scores.join(" | ")
            ));
        }
        let totals: Vec<String> = totals.iter().map(|t| format!("**{}**", number(*t))).collect();
        rows.push(format!("| **Weighted score** | | {} |", totals.join(" | ")));
        Some(rows.join("\n"))
    }
}

/// `* a\n* b`.
fn bullets(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().map(|item| format!("* {item}")).collect::<Vec<_>>().join("\n")
}

/// Appends a paragraph block after a blank line, if it has any text.
fn push_block(text: &mut String, block: &str) {
    if !block.is_empty() {
        text.push_str("\n\n");
        text.push_str(block);
    }
}
