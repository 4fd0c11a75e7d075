//! The `adr` plugin through the real host: a record generated from personas and options, with its
//! section events in order on the WebSocket and the superseded record amended; the folder then
//! analysed (warnings per issue, the `adr generate toc` table of contents); a large folder within
//! its fuel; and bad input ending as `invalid_input` naming the field.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use taskhost_e2e::Host;

const MINUTE: Duration = Duration::from_secs(60);

/// Record 2 as adr-tools 3.0.0's `adr new "Use MySQL Database"` writes it.
const MYSQL_RECORD: &str = "# 2. Use MySQL Database\n\nDate: 2024-01-02\n\n## Status\n\nAccepted\n\n## Context\n\n\
                            Orders need a database.\n\n## Decision\n\nWe will use MySQL.\n\n## Consequences\n\n\
                            Replication is set up by the provider.\n";

/// Record 1 as `adr init` writes it.
const INIT_RECORD: &str = "# 1. Record architecture decisions\n\nDate: 2024-01-01\n\n## Status\n\nAccepted\n\n\
                           ## Context\n\nWe need to record the architectural decisions made on this project.\n\n\
                           ## Decision\n\nWe will use Architecture Decision Records, as [described by Michael \
                           Nygard](http://thinkrelevance.com/blog/2011/11/15/documenting-architecture-decisions).\n\n\
                           ## Consequences\n\nSee Michael Nygard's article, linked above. For a lightweight ADR \
                           toolset, see Nat Pryce's [adr-tools](https://github.com/npryce/adr-tools).\n";

fn generate_input(format: &str) -> Value {
    json!({
        "title": "Use PostgreSQL for order persistence",
        "context": "Orders are lost when the flat-file host fails, and reporting needs ad hoc queries.",
        "date": "2024-03-04",
        "format": format,
        "decision_drivers": [{"name": "Data integrity", "weight": 3}, {"name": "Operational cost", "weight": 2}],
        "options": [
            {"name": "PostgreSQL", "pros": ["schema changes are transactional"],
             "cons": ["needs vacuum tuning"], "scores": {"Data integrity": 9, "Operational cost": 6}},
            {"name": "MySQL", "pros": ["the provider runs it"], "cons": ["schema changes are not transactional"],
             "scores": {"Data integrity": 7, "Operational cost": 8}}
        ],
        "personas": [
            {"name": "Ada Lovelace", "role": "Database administrator", "stance": "Migrations must roll back.",
             "favours": "PostgreSQL", "concerns": ["Data integrity"]},
            {"name": "Bob Kahn", "role": "Site reliability engineer", "stance": "A managed service keeps the pager quiet.",
             "favours": "MySQL"},
            {"name": "Chen Wei", "role": "Reporting lead", "stance": "Analysts need window functions.",
             "favours": "PostgreSQL", "concerns": ["Query flexibility"]}
        ],
        "existing_files": ["0001-record-architecture-decisions.md", "0002-use-mysql-database.md"],
        "supersedes": {"file_name": "0002-use-mysql-database.md", "content": MYSQL_RECORD}
    })
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event_type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_record_is_generated_section_by_section_and_the_folder_analysed() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();

    // Generation, by plugin name (the default task).
    let id = host.submit(json!({"plugin": "adr", "input": generate_input("nygard")})).await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    let kinds = types(&events);
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_completed"), "{kinds:?}");
    let domain: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "run_started" | "run_completed" | "progress_update" | "log"))
        .collect();
    assert_eq!(
        domain,
        vec![
            "persona_viewpoint",
            "persona_viewpoint",
            "persona_viewpoint",
            "decision_made",
            "section_generated",
            "section_generated",
            "section_generated",
            "section_generated",
            "section_generated",
            "supersede_linked",
        ]
    );
    let sections: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "section_generated")
        .map(|e| e["data"]["heading"].as_str().unwrap())
        .collect();
    assert_eq!(sections, vec!["Title", "Status", "Context", "Decision", "Consequences"]);
    let personas: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "persona_viewpoint")
        .map(|e| e["data"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(personas, vec!["Ada Lovelace", "Bob Kahn", "Chen Wei"]);
    let fuel = events.last().unwrap()["data"]["fuel_used"].as_u64().unwrap();
    eprintln!("generating the record used {fuel} fuel units");
    assert!(fuel < 50_000_000, "fuel {fuel}");
    let decision = events.iter().find(|e| e["event_type"] == "decision_made").unwrap();
    assert_eq!(decision["data"]["chosen_option"], "PostgreSQL");
    assert_eq!(decision["data"]["basis"], "weighted_score");

    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!((task["task"].as_str(), task["queue"].as_str()), (Some("generate_adr"), Some("adr")));
    assert_eq!(task["progress"], 100.0);
    let result = &task["result"];
    let record = &result["record"];
    assert_eq!(record["file_name"], "0003-use-postgresql-for-order-persistence.md");
    let content = record["content"].as_str().unwrap();
    assert!(content.starts_with(
        "# 3. Use PostgreSQL for order persistence\n\nDate: 2024-03-04\n\n## Status\n\nAccepted\n\n\
         Supersedes [2. Use MySQL Database](0002-use-mysql-database.md)\n\n## Context\n"
    ));
    // (3·9 + 2·6) / 5 = 7.8 against (3·7 + 2·8) / 5 = 7.4.
    assert!(content.contains(
        "We will go with \"PostgreSQL\", because it comes out best against the weighted decision drivers \
         (7.8 of 10, against 7.4 for \"MySQL\")."
    ));
    assert!(content.contains("* Query flexibility, raised by Chen Wei (Reporting lead)\n"));
    assert!(content.contains("* Bad, because Bob Kahn (Site reliability engineer) preferred \"MySQL\""));
    let amended = result["superseded"]["content"].as_str().unwrap();
    assert_eq!(amended, MYSQL_RECORD.replace(
        "## Status\n\nAccepted\n",
        "## Status\n\nSuperseded by [3. Use PostgreSQL for order persistence](0003-use-postgresql-for-order-persistence.md)\n"
    ));

    // Analysis of the folder, by task name: the three records, plus a fifth with a bad status
    // (which leaves number 4 missing) and a link to a record that is not there.
    let broken = "# 5. Shard orders\n\nDate: 2024-05-06\n\n## Status\n\nApproved\n\nAmends [9. Gone](0009-gone.md)\n\n\
                  ## Context\n\nx\n\n## Decision\n\nx\n\n## Consequences\n\nx\n";
    let id = host
        .submit(json!({"plugin": "analyze_adrs", "input": {"records": [
            {"file_name": "0001-record-architecture-decisions.md", "content": INIT_RECORD},
            {"file_name": "0002-use-mysql-database.md", "content": amended},
            {"file_name": record["file_name"], "content": content},
            {"file_name": "0005-shard-orders.md", "content": broken},
        ]}}))
        .await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["task"], "analyze_adrs");
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "warning")
        .map(|e| e["data"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(warnings, vec!["invalid_status", "broken_link", "numbering_gap"]);
    let stages: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "analysis_stage")
        .map(|e| e["data"]["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, vec!["records_checked", "links_checked", "numbering_checked", "toc_generated"]);
    let summary = events.iter().find(|e| e["event_type"] == "analysis_summary").unwrap();
    assert_eq!(summary["data"]["issues"], 3);

    let report = &task["result"];
    assert_eq!(report["errors"], 2);
    assert_eq!(report["numbering"]["gaps"], json!([{"from": 4, "to": 4}]));
    assert_eq!(report["numbering"]["next"], 6);
    assert_eq!(
        report["toc"],
        "# Architecture Decision Records\n\n\
         * [1. Record architecture decisions](0001-record-architecture-decisions.md)\n\
         * [2. Use MySQL Database](0002-use-mysql-database.md)\n\
         * [3. Use PostgreSQL for order persistence](0003-use-postgresql-for-order-persistence.md)\n\
         * [5. Shard orders](0005-shard-orders.md)\n"
    );
    assert_eq!(
        report["records"][2]["links"][0],
        json!({"kind": "Supersedes", "target": "0002-use-mysql-database.md", "resolves_to": "0002-use-mysql-database.md"})
    );
}

#[tokio::test]
async fn a_madr_record_and_a_large_folder_run_within_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "generate_adr", "input": generate_input("madr")})).await;
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let content = task["result"]["record"]["content"].as_str().unwrap();
    assert!(content.starts_with(
        "---\nstatus: accepted\ndate: 2024-03-04\nconsulted: Ada Lovelace (Database administrator), Bob Kahn \
         (Site reliability engineer), Chen Wei (Reporting lead)\n---\n\n# Use PostgreSQL for order persistence\n"
    ));
    assert!(content.contains(
        "\n## More Information\n\nSupersedes [2. Use MySQL Database](0002-use-mysql-database.md)\n"
    ));

    // A folder of 2,000 records (about 750 KB of JSON, under the host's 1 MiB input cap), each
    // superseding the one before: 3,998 links to resolve and check both ways.
    let count = 2_000;
    let name = |n: u32| format!("{n:04}-decision-{n}.md");
    let records: Vec<Value> = (1..=count)
        .map(|n| {
            let mut status = if n < count {
                format!("Superseded by [{}. Decision {}]({})", n + 1, n + 1, name(n + 1))
            } else {
                "Accepted".to_owned()
            };
            if n > 1 {
                status.push_str(&format!("\n\nSupersedes [{}. Decision {}]({})", n - 1, n - 1, name(n - 1)));
            }
            json!({
                "file_name": name(n),
                "content": format!(
                    "# {n}. Decision {n}\n\nDate: 2024-01-01\n\n## Status\n\n{status}\n\n## Context\n\nWhy {n}.\n\n\
                     ## Decision\n\nWe will.\n\n## Consequences\n\nSome.\n"
                ),
            })
        })
        .collect();
    let id = host.submit(json!({"plugin": "analyze_adrs", "input": {"records": records}})).await;
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"]["record_count"], count);
    assert_eq!(task["result"]["issues"], json!([]));
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    let completed =
        events["events"].as_array().unwrap().iter().find(|e| e["event_type"] == "run_completed").unwrap();
    let fuel = completed["data"]["fuel_used"].as_u64().unwrap();
    eprintln!("analysing {count} linked records used {fuel} fuel units");
    // About 2.6·10⁸; the manifest's 5·10⁹ covers the worst input the host accepts (1 MiB of
    // faulty records: 1.1·10⁹) four times over.
    assert!(fuel < 500_000_000, "fuel {fuel}");
}

#[tokio::test]
async fn bad_input_ends_as_invalid_input_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let mut bad_date = generate_input("nygard");
    bad_date["date"] = json!("2024-13-01");
    let mut bad_persona = generate_input("madr");
    bad_persona["personas"][1]["favours"] = json!("Cassandra");
    let cases = [
        (json!({"plugin": "adr", "input": bad_date}), "date: \"2024-13-01\" is not a date as YYYY-MM-DD"),
        (
            json!({"plugin": "adr", "input": bad_persona}),
            "personas[1].favours: \"Cassandra\" is not one of the options",
        ),
        (
            json!({"plugin": "analyze_adrs", "input": {"records": [{"file_name": "../x.md", "content": ""}]}}),
            "records[0].file_name: must be a plain file name",
        ),
        (
            json!({"plugin": "analyze_adrs", "input": {"records": [{"name": "0001-x.md"}]}}),
            "records[0].name: unknown field `name`",
        ),
    ];
    for (body, expected) in cases {
        let id = host.submit(body).await;
        let task = host.wait_finished(&id, MINUTE).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert_eq!(task["error"]["kind"], "invalid_input", "{task}");
        let message = task["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} does not contain {expected:?}");
        assert_eq!(task["attempts"], 1);
    }
}
