//! Writes the seed corpora under `corpus/<target>/`: a few small valid inputs per
//! target, made with bascule's own encoders. Run from `fuzz/`:
//!     cargo run --example gen_corpus
use std::path::Path;

use bascule::bundle::{create_bundle, BundleReader, Compression, CreateOptions, HEADER_LEN};
use bascule_hal::env::{GrubCodec, NativeCodec, UbootCodec};
use bascule_hal::EnvVars;
use ed25519_dalek::SigningKey;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs.iter().copied().collect()
}

fn bundle(dir: &Path, name: &str, images: &[usize], compression: Compression) -> Vec<u8> {
    let mut paths = Vec::new();
    for (i, &len) in images.iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|b| ((b * 7 + i) % 251) as u8 ^ (b / 300) as u8).collect();
        let path = dir.join(format!("{name}-{i}.img"));
        std::fs::write(&path, data).expect("write image");
        paths.push((format!("class{i}"), path));
    }
    let opts = CreateOptions {
        version: "2.1.0".parse().expect("semver"),
        compatible: "fuzz-board".into(),
        security_version: 2,
        build_id: name.into(),
        min_from_version: None,
        images: paths,
        compression,
        chunk_size: 4096,
        zstd_level: 1,
        xz_level: 6,
    };
    let out = dir.join(format!("{name}.bundle"));
    create_bundle(&opts, &SigningKey::from_bytes(&[9; 32]), &out).expect("create bundle");
    std::fs::read(out).expect("read bundle")
}

fn bundles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seeds = [
        ("none-1", bundle(dir.path(), "none-1", &[5000], Compression::None)),
        ("zstd-2", bundle(dir.path(), "zstd-2", &[9000, 100], Compression::Zstd)),
        ("xz-2", bundle(dir.path(), "xz-2", &[9000, 100], Compression::Xz)),
        ("empty-image", bundle(dir.path(), "empty", &[0, 4096], Compression::None)),
    ];
    for (name, bytes) in &seeds {
        write("bundle_reader", name, bytes);
        write("bundle_header", name, &bytes[..HEADER_LEN]);
        let reader = BundleReader::open_unverified(bytes.as_slice()).expect("open seed bundle");
        write("manifest", name, reader.manifest_bytes());
    }
}

fn envs() {
    let rauc = vars(&[("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "0"), ("BASCULE_A_VERSION", "1.0.0")]);
    let grub = vars(&[("ORDER", "B A"), ("A_OK", "1"), ("A_TRY", "0"), ("B_OK", "1"), ("B_TRY", "1"), ("x", "a\\b\nc")]);
    for (redundant, name) in [(false, "single"), (true, "redundant")] {
        let codec = UbootCodec::new(512, redundant).expect("codec");
        write("uboot_env", name, &codec.encode(&rauc, 7).expect("encode"));
        write("uboot_env", &format!("{name}-ff"), &codec.with_padding(0xff).encode(&EnvVars::new(), 0xff).expect("encode"));
    }
    let grub_codec = GrubCodec::default();
    write("grub_env", "rauc", &grub_codec.encode(&grub).expect("encode"));
    write("grub_env", "empty", &grub_codec.encode(&EnvVars::new()).expect("encode"));
    let native = NativeCodec::new(256).expect("codec");
    write("native_env", "rauc", &native.encode(&rauc, 42).expect("encode"));
    write("native_env", "empty", &native.encode(&EnvVars::new(), u64::MAX).expect("encode"));
}

fn configs() {
    let slots = r#"
[slots.rootfs.A]
device = "disk.img"
size = 4096
[slots.rootfs.B]
device = "disk.img"
offset = 4096
size = 4096
"#;
    let head = "compatible = \"acme\"\nkeyring = \"keys\"\nstate_dir = \"state\"\n[boot]\ncmdline = \"cmdline\"\nattempts = 3\n";
    let backends = [
        ("uboot", "[bootenv]\nbackend = \"uboot\"\npath = \"uboot.env\"\nsize = 16384\nredundant_offset = 16384\n"),
        ("grub", "[bootenv]\nbackend = \"grub\"\npath = \"grubenv\"\n"),
        ("native", "[bootenv]\nbackend = \"native\"\npath = \"env.bin\"\nsize = 4096\nsecond_offset = 4096\n"),
    ];
    for (name, bootenv) in backends {
        write("config", name, format!("{head}{bootenv}{slots}").as_bytes());
    }
}

fn main() {
    bundles();
    envs();
    configs();
    println!("seed corpora written under corpus/");
}
