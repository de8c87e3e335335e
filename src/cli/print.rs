//! What the commands print: plain sentences for people, JSON for machines.
use crate::bundle::{KeyId, Manifest};
use crate::install::{hex, InstallReport};
use crate::ops::StatusReport;
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
    println!("security floor: {}", report.security_floor);
    println!("env writes per boot: {}", report.env_writes_per_boot);
}

pub fn marked(what: &str, slot: SlotName, written: bool) {
    if written {
        println!("slot {slot} marked {what}");
    } else {
        println!("slot {slot} already {what}: nothing written");
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
            "bytes": report.bytes, "dry_run": report.dry_run,
        });
        println!("{line}");
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

pub fn bundle_info(m: &Manifest, key_id: KeyId, verdict: &str, json: bool) {
    if json {
        let images: Vec<_> = m
            .images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "slot_class": i.slot_class, "size": i.size, "sha256": hex(&i.sha256),
                    "compression": i.compression.to_string(), "chunk_size": i.chunk_size,
                    "chunks": i.chunks.len(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "version": m.version, "compatible": m.compatible, "security_version": m.security_version,
            "build_id": m.build_id, "created_unix": m.created_unix, "key_id": key_id.to_string(),
            "signature": verdict, "images": images,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!("version:          {}", m.version);
    println!("compatible:       {}", m.compatible);
    println!("security version: {}", m.security_version);
    println!("build id:         {}", m.build_id);
    println!("signed by key:    {key_id}");
    println!("signature:        {verdict}");
    for (n, i) in m.images.iter().enumerate() {
        println!(
            "image {n}: class {} size {} sha256 {} compression {} chunks {} x {}",
            i.slot_class,
            i.size,
            hex(&i.sha256),
            i.compression,
            i.chunks.len(),
            i.chunk_size
        );
    }
}
