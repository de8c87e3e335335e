//! What the commands print: plain sentences for people, JSON for machines.
use crate::bundle::{describe_features, KeyId, Manifest};
use crate::health::history::{format_time, Outcome, Read, Record};
use crate::health::{ProbeReport, ProbeResult};
use crate::install::{hex, ActivateReport, InstallReport, StageTimes};
use crate::ops::{GoodOutcome, MarkedGood, StatusReport};
use crate::slot::BootDecision;
use bascule_partitions::SlotName;

pub fn status(report: &StatusReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    match (report.booted, &report.booted_error) {
        (Some(slot), _) => println!("booted:      slot {slot}"),
        (None, Some(err)) => println!("booted:      unknown ({err})"),
        (None, None) => println!("booted:      unknown"),
    }
    println!("compatible:  {}", report.compatible);
    println!("boot scheme: {} on {}", report.boot_scheme, report.bootenv);
    if let Some(warning) = &report.bootenv_warning {
        println!("WARNING:     {warning}");
    }
    let order: Vec<&str> = report.boot_order.iter().map(|s| s.as_str()).collect();
    println!("boot order:  {}", order.join(" "));
    for info in &report.slots {
        let marks = match (Some(info.slot) == report.booted, info.primary) {
            (true, true) => " [booted, primary]",
            (true, false) => " [booted]",
            (false, true) => " [primary]",
            (false, false) => "",
        };
        let version = info.version.as_deref().unwrap_or("unknown");
        println!(
            "slot {}:      {} — version {version}{marks}",
            info.slot, info.state
        );
    }
    for info in report.slots.iter().filter(|i| i.staged) {
        println!(
            "staged:      slot {} (manifest sha256 {}): written and verified by install \
             --no-activate, unbootable until `bascule activate`",
            info.slot,
            info.manifest.as_deref().unwrap_or("unknown")
        );
    }
    println!("next boot:   {}", next_boot(report));
    println!(
        "security floor: {} ({})",
        report.security_floor, report.security_floor_store
    );
    println!("state dir:   {}", report.state_dir);
    for record in &report.rollbacks {
        println!("rolled back: {}", rollback(record));
    }
    println!("env writes per boot: {}", report.env_writes_per_boot);
}

/// The next power-on in words: which slot, and whether a counter reset comes first.
fn next_boot(report: &StatusReport) -> String {
    match (report.next_boot.slot, report.next_boot.after_reset) {
        (Some(slot), false) => format!("slot {slot}"),
        (Some(slot), true) => format!(
            "slot {slot}, after the bootloader finds no slot with a try left, resets the \
             counters and the board"
        ),
        (None, _) => "none: no slot is bootable even after a counter reset".to_string(),
    }
}

pub fn marked(what: &str, slot: SlotName, written: bool) {
    if written {
        println!("slot {slot} marked {what}");
    } else {
        println!("slot {slot} already {what}: nothing written");
    }
}

/// The post-commit hook's failure, on stderr: the confirmation stands.
fn post_commit_failed(failed: Option<&crate::hooks::HookFailed>) {
    if let Some(failed) = failed {
        eprintln!("warning: {failed} (the confirmation stands; recorded in bascule history)");
        for line in failed.output.lines() {
            eprintln!("    | {line}");
        }
    }
}

pub fn marked_good(result: &MarkedGood) {
    post_commit_failed(result.post_commit.as_ref());
    let slot = result.slot;
    match &result.outcome {
        GoodOutcome::Confirmed { floor: (from, to) } => {
            marked("good", slot, result.written);
            if to > from {
                println!("security floor raised from {from} to {to}");
            }
        }
        GoodOutcome::AlreadyGood => {
            marked("good", slot, result.written);
            println!("slot {slot} is not booted: the security floor is not raised");
        }
        GoodOutcome::Revived {
            was,
            version,
            tries,
            floor,
        } => println!(
            "slot {slot} (v{version}) was {was}; it is now primary with {tries} fresh tries. \
             The security floor stays {floor} until it boots and confirms itself"
        ),
    }
}

pub fn boot_decision(decision: BootDecision) {
    match decision {
        BootDecision::Boot(slot) => println!("bootloader: booting slot {slot}"),
        BootDecision::NoSlotResetCounters => {
            println!("bootloader: no slot has tries left; counters reset, board reset")
        }
    }
}

pub fn installed(report: &InstallReport, json: bool) {
    if json {
        let line = serde_json::json!({
            "event": "installed", "slot": report.target.as_str(), "version": report.version,
            "bytes": report.bytes, "dry_run": report.dry_run, "staged": report.staged,
        });
        println!("{line}");
    } else if report.staged {
        println!(
            "installed {} into slot {} ({} bytes); slot {} stays unbootable until \
             `bascule activate` marks it pending",
            report.version, report.target, report.bytes, report.target
        );
    } else if report.dry_run {
        println!(
            "dry run: bundle {} verified ({} bytes) for slot {}; nothing written",
            report.version, report.bytes, report.target
        );
    } else {
        println!(
            "installed {} into slot {} ({} bytes); slot {} is pending: reboot to try it",
            report.version, report.target, report.bytes, report.target
        );
    }
}

/// The install's per-stage busy/idle times, as one JSON line on stderr.
pub fn stages(times: &StageTimes) {
    let mut line = times.to_json();
    line["event"] = "stages".into();
    eprintln!("{line}");
}

pub fn bundle_info(m: &Manifest, key_id: KeyId, verdict: &str, json: bool) {
    if json {
        let images: Vec<_> = m
            .images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "slot_class": i.slot_class, "size": i.size, "sha256": hex(&i.sha256),
                    "sha256_compared_by": "install --verify full only (the default checks each chunk's signed SHA-256)",
                    "compression": i.compression.to_string(), "chunk_size": i.chunk_size,
                    "chunks": i.chunks.len(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "version": m.version, "compatible": m.compatible, "security_version": m.security_version,
            "build_id": m.build_id, "created_unix": m.created_unix, "key_id": key_id.to_string(),
            "min_from_version": m.min_from_version, "required_features": m.required_features,
            "required_feature_names": describe_features(m.required_features),
            "signature": verdict, "images": images,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!("version:          {}", m.version);
    println!("compatible:       {}", m.compatible);
    println!("security version: {}", m.security_version);
    println!("build id:         {}", m.build_id);
    println!(
        "upgrades from:    {}",
        match &m.min_from_version {
            Some(v) => format!("{v} or newer (min_from_version)"),
            None => "any version".into(),
        }
    );
    println!(
        "features needed:  {}",
        describe_features(m.required_features)
    );
    println!("signed by key:    {key_id}");
    println!("signature:        {verdict}");
    for (n, i) in m.images.iter().enumerate() {
        println!(
            "image {n}: class {} size {} compression {} chunks {} x {}",
            i.slot_class,
            i.size,
            i.compression,
            i.chunks.len(),
            i.chunk_size
        );
        println!(
            "  whole-image sha256 {} (compared only by install --verify full; \
             the default install checks each chunk's signed SHA-256)",
            hex(&i.sha256)
        );
    }
}

/// Why a slot is bad, from its history record, on one line.
fn rollback(r: &Record) -> String {
    let version = r.version.as_deref().unwrap_or("unknown");
    let when = format_time(r.time);
    let reason = r.reason.as_deref().unwrap_or("failed");
    let last_output = r
        .output
        .as_deref()
        .and_then(|o| o.lines().rev().find(|l| !l.trim().is_empty()))
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    match r.outcome {
        Outcome::RevertedWithoutProbe => format!(
            "slot {} v{version}: the bootloader reverted it without a probe (kernel panic, \
             hang), noticed {when}",
            r.slot
        ),
        _ => format!(
            "slot {} v{version}: its health probe failed at {when}, stage {:?}, check {:?}: \
             {reason}{last_output}",
            r.slot,
            r.stage.as_deref().unwrap_or("?"),
            r.check.as_deref().unwrap_or("?"),
        ),
    }
}

/// What `bascule health` did.
pub fn health(report: &ProbeReport) {
    post_commit_failed(report.post_commit.as_ref());
    let version = report.version.as_deref().unwrap_or("unknown");
    if let Some(r) = &report.recorded_revert {
        println!("recorded:    {}", rollback(r));
    }
    for name in &report.passed {
        println!("passed:      {name}");
    }
    match &report.result {
        ProbeResult::Confirmed(done) => {
            let write = match done.written {
                true => "env written",
                false => "nothing to write",
            };
            let floor = match done.floor {
                (a, b) if a == b => format!("security floor stays {a}"),
                (a, b) => format!("security floor raised {a} -> {b}"),
            };
            println!(
                "healthy:     slot {} (v{version}) confirmed ({write}; {floor})",
                report.slot
            );
        }
        ProbeResult::Passed => println!(
            "healthy:     slot {} (v{version}): every check passed (not confirmed: --no-confirm)",
            report.slot
        ),
        ProbeResult::Failed { failure, action } => {
            println!(
                "FAILED:      slot {} (v{version}), stage {:?}, check {:?}",
                report.slot, failure.stage, failure.check
            );
            println!("    {}", failure.reason);
            for line in failure.output.lines() {
                println!("    | {line}");
            }
            println!("action:      {action}");
        }
    }
}

/// `bascule history`.
pub fn history(read: &Read, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&read.records).unwrap_or_default()
        );
        return;
    }
    if read.records.is_empty() {
        println!("no health records");
    }
    for r in &read.records {
        let version = r.version.as_deref().unwrap_or("unknown");
        print!(
            "{}  slot {} v{version}  boot {}  {}",
            format_time(r.time),
            r.slot,
            r.boot_count,
            r.outcome
        );
        if let (Some(stage), Some(check)) = (&r.stage, &r.check) {
            print!("  stage {stage:?} check {check:?}");
        }
        println!();
        if let Some(reason) = &r.reason {
            println!("    {reason}");
        }
        if let Some(action) = &r.action {
            println!("    action: {action}");
        }
        for line in r.output.as_deref().unwrap_or("").lines() {
            println!("    | {line}");
        }
    }
    if read.skipped > 0 {
        println!("({} torn or corrupt line(s) skipped)", read.skipped);
    }
}

pub fn activated(report: &ActivateReport) {
    println!(
        "activated {} in slot {} (manifest sha256 {}): slot {} is pending: reboot to try it",
        report.version, report.target, report.manifest_sha256, report.target
    );
}
