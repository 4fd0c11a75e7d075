//! The decision model: people's viewpoints folded into drivers, arguments and consequences, and
//! the choice of an option when the request does not state it.
//!
//! A record is only as good as the reasoning it keeps. This module turns the request's structured
//! evidence into that reasoning, by fixed rules, so that the same input always gives the same
//! record and every sentence can be traced to a field:
//!
//! - **Drivers** (MADR's "Decision Drivers", a list in Nygard's Context): the request's drivers,
//!   each with the personas whose `concerns` name it; then concerns that no driver names, merged
//!   across personas; then one "viewpoint" line per persona quoting its `stance`.
//! - **Arguments per option** (MADR's "Pros and Cons of the Options"), in MADR's order Good,
//!   Neutral, Bad (MADR ADR-0014 added Neutral): the option's `pros`, then "Ada Lovelace (DBA)
//!   favours it" for each persona whose `favours` names it; its `neutral` arguments; its `cons`,
//!   then "… opposes it" for each persona whose `opposes` names it.
//! - **Choice**, when `decision` is absent, by the first kind of evidence the request has:
//!   1. a weighted decision matrix (every option scored 0-10 against every driver): the weighted
//!      sum model, `S_j = Σ_i w_i s_ij / Σ_i w_i`, the simplest multi-criteria decision method
//!      (Fishburn 1967; Triantaphyllou, *Multi-Criteria Decision Making Methods*, 2000, ch. 2),
//!      highest `S_j` wins;
//!   2. else personas' preferences: net support `favour_j - oppose_j`, ties broken by 3;
//!   3. else the balance of arguments `pros_j - cons_j`;
//!
//!   remaining ties go to the option listed first, and the rationale says so. A stated
//!   `decision` is checked against the same evidence: when the evidence favours another option,
//!   the rationale says so openly and the task emits a `warning`.
//! - **Consequences** of the chosen option (Nygard: "what becomes easier or more difficult to do
//!   and any risks introduced"): its pros (Good), neutral points, cons (Bad); the support of the
//!   personas who favour it (Good); the viewpoints of those who oppose it, or who preferred
//!   another option, as risks to address (Bad); and, with a matrix, the drivers on which it scores
//!   best or worst of all options.

use serde::Serialize;

use crate::request::{DecisionOption, GenerateRequest, Persona};

/// Which way an argument or consequence weighs (MADR's "Good, because", "Neutral, because",
/// "Bad, because").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Polarity {
    /// For.
    Good,
    /// Neither.
    Neutral,
    /// Against.
    Bad,
}

impl Polarity {
    fn word(self) -> &'static str {
        match self {
            Polarity::Good => "Good",
            Polarity::Neutral => "Neutral",
            Polarity::Bad => "Bad",
        }
    }
}

/// One argument or consequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Argument {
    /// Which way it weighs.
    pub polarity: Polarity,
    /// The reason, as a clause after "because".
    pub text: String,
    /// The persona it comes from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
}

impl Argument {
    fn new(polarity: Polarity, text: impl Into<String>) -> Self {
        Argument { polarity, text: text.into(), persona: None }
    }

    fn from_persona(polarity: Polarity, text: impl Into<String>, persona: &Persona) -> Self {
        Argument { polarity, text: text.into(), persona: Some(persona.name.clone()) }
    }

    /// `Good, because it is fast`.
    pub fn sentence(&self) -> String {
        format!("{}, because {}", self.polarity.word(), self.text)
    }
}

/// Where a driver line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverSource {
    /// The request's `decision_drivers`.
    Request,
    /// A persona's concern that no driver names.
    PersonaConcern,
    /// A persona's stance.
    PersonaViewpoint,
}

/// One line of the Decision Drivers list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverLine {
    /// The driver's text.
    pub text: String,
    /// Its weight, when the request gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Labels of the personas who raised it.
    pub raised_by: Vec<String>,
    /// Where it comes from.
    pub source: DriverSource,
}

impl DriverLine {
    /// `Data integrity (weight 3), raised by Ada Lovelace (Database administrator)`.
    pub fn sentence(&self) -> String {
        let mut sentence = self.text.clone();
        if let Some(weight) = self.weight {
            sentence.push_str(&format!(" (weight {})", number(weight)));
        }
        if !self.raised_by.is_empty() && self.source != DriverSource::PersonaViewpoint {
            sentence.push_str(&format!(", raised by {}", join_and(&self.raised_by)));
        }
        sentence
    }
}

/// How the chosen option was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionBasis {
    /// The request named it.
    Stated,
    /// It was the only option.
    OnlyOption,
    /// Highest weighted score.
    WeightedScore,
    /// Most net support among the personas.
    PersonaSupport,
    /// Best balance of pros and cons.
    ProsAndCons,
    /// Nothing told the options apart: the first listed.
    FirstListed,
}

/// The choice and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Index of the chosen option.
    pub chosen: usize,
    /// Its name.
    pub chosen_option: String,
    /// How it was chosen.
    pub basis: DecisionBasis,
    /// The reason, as a clause after "because" (no final full stop).
    pub rationale: String,
    /// Weighted score per option (0-10), with a matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted_scores: Option<Vec<f64>>,
    /// Net persona support per option (favour minus oppose).
    pub net_support: Vec<i64>,
    /// The option the evidence favours, when a stated decision differs from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_favours: Option<String>,
}

/// A number without needless decimals: 3 → `3`, 2.5 → `2.5`, 1/3 → `0.33`.
pub fn number(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    let text = format!("{rounded:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `a`, `a and b`, `a, b and c`.
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The Decision Drivers list, with the personas' concerns and viewpoints folded in.
pub fn driver_lines(request: &GenerateRequest) -> Vec<DriverLine> {
    let mut lines: Vec<DriverLine> = request
        .drivers
        .iter()
        .map(|d| DriverLine {
            text: d.name.clone(),
            weight: d.weighted.then_some(d.weight),
            raised_by: Vec::new(),
            source: DriverSource::Request,
        })
        .collect();
    for persona in &request.personas {
        for concern in &persona.concerns {
            let same = |line: &DriverLine| line.text.to_lowercase() == concern.to_lowercase();
            match lines.iter_mut().find(|l| same(l)) {
                Some(line) => {
                    if !line.raised_by.contains(&persona.label()) {
                        line.raised_by.push(persona.label());
                    }
                }
                None => lines.push(DriverLine {
                    text: concern.clone(),
                    weight: None,
                    raised_by: vec![persona.label()],
                    source: DriverSource::PersonaConcern,
                }),
            }
        }
    }
    for persona in &request.personas {
        lines.push(DriverLine {
            text: format!("Viewpoint of {}: {}", persona.label(), persona.stance),
            weight: None,
            raised_by: vec![persona.label()],
            source: DriverSource::PersonaViewpoint,
        });
    }
    lines
}

/// The arguments for and against each option, personas folded in, in MADR's order.
pub fn option_arguments(request: &GenerateRequest) -> Vec<Vec<Argument>> {
    (0..request.options.len())
        .map(|j| {
            let option = &request.options[j];
            let mut arguments: Vec<Argument> =
                option.pros.iter().map(|p| Argument::new(Polarity::Good, p.clone())).collect();
            for persona in request.personas.iter().filter(|p| p.favours == Some(j)) {
                arguments.push(Argument::from_persona(
                    Polarity::Good,
                    format!("{} favours it", persona.label()),
                    persona,
                ));
            }
            arguments.extend(option.neutral.iter().map(|n| Argument::new(Polarity::Neutral, n.clone())));
            arguments.extend(option.cons.iter().map(|c| Argument::new(Polarity::Bad, c.clone())));
            for persona in request.personas.iter().filter(|p| p.opposes.contains(&j)) {
                arguments.push(Argument::from_persona(
                    Polarity::Bad,
                    format!("{} opposes it", persona.label()),
                    persona,
                ));
            }
            arguments
        })
        .collect()
}

/// The weighted score of each option, `Σ w_i s_ij / Σ w_i`, when every option is scored.
pub fn weighted_scores(request: &GenerateRequest) -> Option<Vec<f64>> {
    let total_weight: f64 = request.drivers.iter().map(|d| d.weight).sum();
    if total_weight <= 0.0 {
        return None;
    }
    request
        .options
        .iter()
        .map(|o| {
            let scores = o.scores.as_ref()?;
            Some(scores.iter().zip(&request.drivers).map(|(s, d)| s * d.weight).sum::<f64>() / total_weight)
        })
        .collect()
}

/// Net support of each option among the personas: those who favour it minus those who oppose it.
pub fn net_support(personas: &[Persona], options: &[DecisionOption]) -> Vec<i64> {
    (0..options.len())
        .map(|j| {
            let favour = personas.iter().filter(|p| p.favours == Some(j)).count() as i64;
            let oppose = personas.iter().filter(|p| p.opposes.contains(&j)).count() as i64;
            favour - oppose
        })
        .collect()
}

/// The evidence used to rank options.
enum Evidence {
    Scores(Vec<f64>),
    Support(Vec<i64>, Vec<i64>),
    Balance(Vec<i64>),
}

impl Evidence {
    fn of(request: &GenerateRequest) -> Option<Evidence> {
        let balance: Vec<i64> =
            request.options.iter().map(|o| o.pros.len() as i64 - o.cons.len() as i64).collect();
        if let Some(scores) = weighted_scores(request) {
            return Some(Evidence::Scores(scores));
        }
        if request.personas.iter().any(|p| p.favours.is_some() || !p.opposes.is_empty()) {
            return Some(Evidence::Support(net_support(&request.personas, &request.options), balance));
        }
        if request.options.iter().any(|o| !o.pros.is_empty() || !o.cons.is_empty()) {
            return Some(Evidence::Balance(balance));
        }
        None
    }

    /// Options from best to worst (stable: ties keep the listed order).
    fn ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        match self {
            Evidence::Scores(s) => order.sort_by(|&a, &b| s[b].total_cmp(&s[a])),
            Evidence::Support(support, balance) => {
                order.sort_by(|&a, &b| (support[b], balance[b]).cmp(&(support[a], balance[a])))
            }
            Evidence::Balance(balance) => order.sort_by(|&a, &b| balance[b].cmp(&balance[a])),
        }
        order
    }

    fn len(&self) -> usize {
        match self {
            Evidence::Scores(s) => s.len(),
            Evidence::Support(s, _) => s.len(),
            Evidence::Balance(b) => b.len(),
        }
    }

    fn ties(&self, a: usize, b: usize) -> bool {
        match self {
            Evidence::Scores(s) => s[a] == s[b],
            Evidence::Support(support, balance) => support[a] == support[b] && balance[a] == balance[b],
            Evidence::Balance(balance) => balance[a] == balance[b],
        }
    }

    fn basis(&self) -> DecisionBasis {
        match self {
            Evidence::Scores(_) => DecisionBasis::WeightedScore,
            Evidence::Support(..) => DecisionBasis::PersonaSupport,
            Evidence::Balance(_) => DecisionBasis::ProsAndCons,
        }
    }

    /// Why option `j` comes out best (it does, or ties).
    fn best_reason(&self, request: &GenerateRequest, j: usize) -> String {
        let ranking = self.ranking();
        let runner_up = ranking.iter().copied().find(|&k| k != j);
        let mut reason = match self {
            Evidence::Scores(s) => {
                let mut r = format!(
                    "it comes out best against the weighted decision drivers ({} of 10",
                    number(s[j])
                );
                if let Some(k) = runner_up {
                    r.push_str(&format!(", against {} for \"{}\"", number(s[k]), request.options[k].name));
                }
                r.push(')');
                r
            }
            Evidence::Support(support, balance) => {
                let favour = request.personas.iter().filter(|p| p.favours == Some(j)).count();
                let oppose = request.personas.iter().filter(|p| p.opposes.contains(&j)).count();
                let mut r = format!(
                    "it has the most support among the people consulted ({favour} in favour, {oppose} against)"
                );
                if let Some(k) = runner_up
                    && support[k] == support[j]
                    && balance[k] != balance[j]
                {
                    r.push_str(" and a better balance of pros and cons than \"");
                    r.push_str(&request.options[k].name);
                    r.push('"');
                }
                r
            }
            Evidence::Balance(_) => {
                let o = &request.options[j];
                format!(
                    "it has the best balance of pros and cons ({} {}, {} {})",
                    o.pros.len(),
                    if o.pros.len() == 1 { "pro" } else { "pros" },
                    o.cons.len(),
                    if o.cons.len() == 1 { "con" } else { "cons" }
                )
            }
        };
        if let Some(k) = runner_up
            && self.ties(j, k)
        {
            reason.push_str(&format!(", level with \"{}\", and is listed first", request.options[k].name));
        }
        reason
    }

    /// `comes out ahead against the weighted decision drivers (7.5 of 10 against 6)`, for a
    /// stated choice `j` that the evidence does not favour.
    fn ahead_phrase(&self, best: usize, j: usize) -> String {
        match self {
            Evidence::Scores(s) => format!(
                "scores higher against the weighted decision drivers ({} of 10, against {})",
                number(s[best]),
                number(s[j])
            ),
            Evidence::Support(support, _) if support[best] != support[j] => format!(
                "has more support among the people consulted (net {:+}, against {:+})",
                support[best], support[j]
            ),
            Evidence::Support(..) | Evidence::Balance(_) => {
                "has a better balance of pros and cons".to_owned()
            }
        }
    }
}

/// Chooses the option (or checks the stated choice) and says why.
pub fn decide(request: &GenerateRequest) -> Decision {
    let evidence = Evidence::of(request);
    let weighted = weighted_scores(request);
    let support = net_support(&request.personas, &request.options);
    let decision = |chosen: usize, basis, rationale: String, evidence_favours: Option<String>| Decision {
        chosen,
        chosen_option: request.options[chosen].name.clone(),
        basis,
        rationale,
        weighted_scores: weighted.clone(),
        net_support: support.clone(),
        evidence_favours,
    };
    if let Some(chosen) = request.decision {
        let best = evidence.as_ref().map(|e| (e.ranking()[0], e));
        let against = best.and_then(|(b, e)| (b != chosen && !e.ties(b, chosen)).then_some((b, e)));
        let rationale = match (&request.decision_rationale, against, best) {
            (Some(text), _, _) => text.clone(),
            (None, Some((b, e)), _) => format!(
                "the decision-makers chose it, although \"{}\" {}",
                request.options[b].name,
                e.ahead_phrase(b, chosen)
            ),
            (None, None, Some((_, e))) => e.best_reason(request, chosen),
            (None, None, None) if request.options.len() == 1 => "it is the only option considered".to_owned(),
            (None, None, None) => "the decision-makers chose it".to_owned(),
        };
        let favours = against.map(|(b, _)| request.options[b].name.clone());
        return decision(chosen, DecisionBasis::Stated, rationale, favours);
    }
    if request.options.len() == 1 {
        let rationale =
            request.decision_rationale.clone().unwrap_or_else(|| "it is the only option considered".into());
        return decision(0, DecisionBasis::OnlyOption, rationale, None);
    }
    match evidence {
        Some(e) => {
            let chosen = e.ranking()[0];
            let rationale =
                request.decision_rationale.clone().unwrap_or_else(|| e.best_reason(request, chosen));
            decision(chosen, e.basis(), rationale, None)
        }
        None => {
            let rationale = request.decision_rationale.clone().unwrap_or_else(|| {
                "it is the first option listed; no scores, preferences or pros and cons tell the options apart"
                    .to_owned()
            });
            decision(0, DecisionBasis::FirstListed, rationale, None)
        }
    }
}

/// What follows from choosing `decision.chosen`: Good, then Neutral, then Bad.
pub fn consequences(request: &GenerateRequest, decision: &Decision) -> Vec<Argument> {
    let c = decision.chosen;
    let chosen = &request.options[c];
    let mut out: Vec<Argument> =
        chosen.pros.iter().map(|p| Argument::new(Polarity::Good, p.clone())).collect();
    for persona in request.personas.iter().filter(|p| p.favours == Some(c)) {
        out.push(Argument::from_persona(
            Polarity::Good,
            format!("it has the support of {}", persona.label()),
            persona,
        ));
    }
    let matrix = matrix_extremes(request, c);
    for (driver, score) in &matrix.best {
        out.push(Argument::new(
            Polarity::Good,
            format!("it scores best of the options on \"{driver}\" ({} of 10)", number(*score)),
        ));
    }
    out.extend(chosen.neutral.iter().map(|n| Argument::new(Polarity::Neutral, n.clone())));
    out.extend(chosen.cons.iter().map(|con| Argument::new(Polarity::Bad, con.clone())));
    for persona in &request.personas {
        if persona.opposes.contains(&c) {
            out.push(Argument::from_persona(
                Polarity::Bad,
                format!("it goes against the viewpoint of {}, which needs to be addressed", persona.label()),
                persona,
            ));
        } else if let Some(other) = persona.favours.filter(|&f| f != c) {
            out.push(Argument::from_persona(
                Polarity::Bad,
                format!(
                    "{} preferred \"{}\" and is still to be won over",
                    persona.label(),
                    request.options[other].name
                ),
                persona,
            ));
        }
    }
    for (driver, score) in &matrix.worst {
        out.push(Argument::new(
            Polarity::Bad,
            format!("it scores worst of the options on \"{driver}\" ({} of 10)", number(*score)),
        ));
    }
    out
}

struct Extremes {
    best: Vec<(String, f64)>,
    worst: Vec<(String, f64)>,
}

/// The drivers on which option `c` scores strictly best, or strictly worst, of all options.
fn matrix_extremes(request: &GenerateRequest, c: usize) -> Extremes {
    let mut extremes = Extremes { best: Vec::new(), worst: Vec::new() };
    if request.options.len() < 2 {
        return extremes;
    }
    let Some(own) = request.options[c].scores.as_ref() else {
        return extremes;
    };
    for (i, driver) in request.drivers.iter().enumerate() {
        let others: Vec<f64> = request
            .options
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != c)
            .filter_map(|(_, o)| o.scores.as_ref().map(|s| s[i]))
            .collect();
        if others.iter().all(|&s| own[i] > s) {
            extremes.best.push((driver.name.clone(), own[i]));
        } else if others.iter().all(|&s| own[i] < s) {
            extremes.worst.push((driver.name.clone(), own[i]));
        }
    }
    extremes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::GenerateInput;

    fn request(json: serde_json::Value) -> GenerateRequest {
        let input: GenerateInput = serde_json::from_value(json).unwrap();
        input.validate().unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "title": "Choose a database",
            "context": "We need one.",
            "date": "2024-03-04",
            "options": ["PostgreSQL", "MySQL", "MongoDB"],
        })
    }

    #[test]
    fn the_weighted_sum_model_picks_the_highest_weighted_mean() {
        let mut input = base();
        input["decision_drivers"] = serde_json::json!([{"name": "Integrity", "weight": 3}, "Cost"]);
        input["options"] = serde_json::json!([
            {"name": "PostgreSQL", "scores": {"Integrity": 9, "Cost": 6}},
            {"name": "MySQL", "scores": {"Integrity": 7, "Cost": 8}},
            {"name": "MongoDB", "scores": {"Integrity": 4, "Cost": 10}},
        ]);
        let r = request(input);
        let scores = weighted_scores(&r).unwrap();
        // (3*9 + 1*6) / 4 = 8.25; (3*7 + 8) / 4 = 7.25; (3*4 + 10) / 4 = 5.5
        assert_eq!(scores, vec![8.25, 7.25, 5.5]);
        let d = decide(&r);
        assert_eq!((d.chosen, d.basis), (0, DecisionBasis::WeightedScore));
        assert_eq!(
            d.rationale,
            "it comes out best against the weighted decision drivers (8.25 of 10, against 7.25 for \"MySQL\")"
        );
        let consequences = consequences(&r, &d);
        let lines: Vec<String> = consequences.iter().map(Argument::sentence).collect();
        assert_eq!(
            lines,
            vec![
                "Good, because it scores best of the options on \"Integrity\" (9 of 10)",
                "Bad, because it scores worst of the options on \"Cost\" (6 of 10)",
            ]
        );
    }

    #[test]
    fn personas_support_decides_without_scores_and_their_viewpoints_are_folded_in() {
        let mut input = base();
        input["decision_drivers"] = serde_json::json!(["Data integrity"]);
        input["personas"] = serde_json::json!([
            {"name": "Ada", "role": "DBA", "stance": "Transactions first.", "favours": "postgresql",
             "concerns": ["data integrity", "Backups"]},
            {"name": "Bob", "role": "SRE", "stance": "Fewer moving parts.", "favours": "MySQL",
             "opposes": ["MongoDB"], "concerns": ["backups"]},
            {"name": "Cy", "role": "Developer", "stance": "JSON is handy.", "favours": "PostgreSQL"},
        ]);
        let r = request(input);
        let d = decide(&r);
        assert_eq!((d.chosen, d.basis), (0, DecisionBasis::PersonaSupport));
        assert_eq!(d.net_support, vec![2, 1, -1]);
        assert_eq!(
            d.rationale,
            "it has the most support among the people consulted (2 in favour, 0 against)"
        );

        let drivers: Vec<String> = driver_lines(&r).iter().map(DriverLine::sentence).collect();
        assert_eq!(
            drivers,
            vec![
                "Data integrity, raised by Ada (DBA)",
                "Backups, raised by Ada (DBA) and Bob (SRE)",
                "Viewpoint of Ada (DBA): Transactions first.",
                "Viewpoint of Bob (SRE): Fewer moving parts.",
                "Viewpoint of Cy (Developer): JSON is handy.",
            ]
        );
        let arguments = option_arguments(&r);
        assert_eq!(arguments[2][0].sentence(), "Bad, because Bob (SRE) opposes it");
        let consequences: Vec<String> = consequences(&r, &d).iter().map(Argument::sentence).collect();
        assert_eq!(
            consequences,
            vec![
                "Good, because it has the support of Ada (DBA)",
                "Good, because it has the support of Cy (Developer)",
                "Bad, because Bob (SRE) preferred \"MySQL\" and is still to be won over",
            ]
        );
    }

    #[test]
    fn a_stated_decision_against_the_evidence_says_so() {
        let mut input = base();
        input["options"] = serde_json::json!([
            {"name": "PostgreSQL", "pros": ["a", "b"]},
            {"name": "MySQL", "pros": ["a"], "cons": ["c"]},
            "MongoDB"
        ]);
        input["decision"] = serde_json::json!("MySQL");
        let d = decide(&request(input.clone()));
        assert_eq!(d.basis, DecisionBasis::Stated);
        assert_eq!(d.evidence_favours.as_deref(), Some("PostgreSQL"));
        assert!(
            d.rationale.starts_with("the decision-makers chose it, although \"PostgreSQL\""),
            "{}",
            d.rationale
        );

        input["decision"] = serde_json::json!("PostgreSQL");
        let d = decide(&request(input));
        assert_eq!(d.evidence_favours, None);
        assert_eq!(d.rationale, "it has the best balance of pros and cons (2 pros, 0 cons)");
    }

    #[test]
    fn ties_go_to_the_option_listed_first_and_say_so() {
        let mut input = base();
        input["options"] =
            serde_json::json!([{"name": "A", "pros": ["x"]}, {"name": "B", "pros": ["y"]}, {"name": "C"}]);
        let d = decide(&request(input));
        assert_eq!(d.chosen, 0);
        assert!(d.rationale.ends_with("level with \"B\", and is listed first"), "{}", d.rationale);
        let d = decide(&request(base()));
        assert_eq!(d.basis, DecisionBasis::FirstListed);
    }

    #[test]
    fn numbers_drop_needless_decimals() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(1.0 / 3.0), "0.33");
        assert_eq!(join_and(&["a".into(), "b".into(), "c".into()]), "a, b and c");
    }
}
