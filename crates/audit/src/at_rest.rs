//! Encryption at rest of spool segments (`[audit] encryption_key_file`). Each segment gets its
//! own random data key (AES-256-GCM), wrapped by the key-encryption key and kept in the segment's
//! first line, a header that names the key by its id:
//!
//! ```text
//! {"invoiceguard_segment":1,"cipher":"AES-256-GCM","key_id":"3f…","data_key":"…","first_seq":41}
//! ```
//!
//! Every following line is one event, sealed with the data key (a 96-bit nonce: a random prefix
//! per segment and a counter, never repeated under one data key; the segment's first seq as
//! associated data) and written as nonce, ciphertext and tag, with newline and backslash bytes
//! escaped (`\n`, `\\`): still one line per event, so cursors, batches and tail reads work as
//! before, and sealing costs about a copy (no text encoding). The hash
//! chain stays over the plaintext events. A new key (rotation) is used by the segments started
//! after it; older keys stay readable as long as they are configured (`decryption_key_files`).
//!
//! Readers ([`LineDecoder`]) find the header and open each line with the keys this process
//! holds ([`install`]: the gateway's configured keys, or a command's `--encryption-key` files);
//! a plaintext segment's lines pass as they are.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;

/// What starts a segment header line.
const HEADER_START: &[u8] = b"{\"invoiceguard_segment\":";

/// The associated data of a wrapped data key.
const WRAP_AAD: &[u8] = b"invoiceguard data key";

/// The bytes of a key (AES-256).
const KEY_BYTES: usize = 32;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// A key-encryption key, by its id.
#[derive(Clone)]
struct Kek {
    id: String,
    key: Arc<LessSafeKey>,
}

/// The key-encryption keys a process writes and reads segments with.
#[derive(Clone, Default)]
pub struct Keyring {
    current: Option<Kek>,
    keys: HashMap<String, Arc<LessSafeKey>>,
}

impl std::fmt::Debug for Keyring {
    /// The key ids only, never a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current_id())
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The id of a key: the first 16 hex digits of its SHA-256 (never the key).
pub fn key_id(key: &[u8]) -> String {
    hex::encode(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key).as_ref()[..8])
}

/// A new key, as a key file holds it (base64 of 32 random bytes).
pub fn generate_key() -> Result<String, String> {
    let mut key = [0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| "the system's random generator failed".to_owned())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

/// Reads a key file: base64 (or 64 hex digits) of 32 bytes.
fn read_key(path: &Path) -> Result<(String, LessSafeKey), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let text = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .or_else(|| hex::decode(text).ok())
        .filter(|bytes| bytes.len() == KEY_BYTES)
        .ok_or_else(|| {
            format!(
                "`{}` does not hold a key: base64 (or hex) of 32 bytes, as `invoiceguard audit keygen` writes",
                path.display()
            )
        })?;
    let key = UnboundKey::new(&AES_256_GCM, &bytes)
        .map_err(|_| format!("`{}`: not an AES-256 key", path.display()))?;
    Ok((key_id(&bytes), LessSafeKey::new(key)))
}

impl Keyring {
    /// The keys of files: `current` seals new segments (and reads them); `others` only read.
    pub fn load(current: Option<&Path>, others: &[PathBuf]) -> Result<Self, String> {
        let mut keyring = Self::default();
        for path in others {
            let (id, key) = read_key(path)?;
            keyring.keys.insert(id, Arc::new(key));
        }
        if let Some(path) = current {
            let (id, key) = read_key(path)?;
            let key = Arc::new(key);
            keyring.keys.insert(id.clone(), key.clone());
            keyring.current = Some(Kek { id, key });
        }
        Ok(keyring)
    }

    /// The id of the key new segments are sealed with.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(|kek| kek.id.as_str())
    }

    /// Whether the ring holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The keys every reader of this process opens segments with: the union of every keyring
/// installed (a gateway's, or a command's).
static INSTALLED: RwLock<Option<HashMap<String, Arc<LessSafeKey>>>> = RwLock::new(None);

/// Adds a keyring's keys to those this process reads segments with.
pub fn install(keyring: &Keyring) {
    let mut installed = INSTALLED.write().unwrap_or_else(|p| p.into_inner());
    installed.get_or_insert_with(HashMap::new).extend(
        keyring
            .keys
            .iter()
            .map(|(id, key)| (id.clone(), key.clone())),
    );
}

fn installed_key(id: &str) -> Option<Arc<LessSafeKey>> {
    INSTALLED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|keys| keys.get(id).cloned())
}

/// The associated data of a segment's lines.
fn line_aad(first_seq: u64) -> [u8; 16] {
    let mut aad = [0u8; 16];
    aad[..8].copy_from_slice(&first_seq.to_be_bytes());
    aad[8..].copy_from_slice(b"ig-spool");
    aad
}

/// Seals the lines of one segment (the spool's writer holds one per sealed segment).
pub struct Sealer {
    key: LessSafeKey,
    /// The nonce's random first four bytes, for this segment's data key.
    prefix: [u8; 4],
    /// The nonce's last eight: the line's number under this data key.
    counter: u64,
    aad: [u8; 16],
    /// The segment's header line (with its newline).
    pub(crate) header: Vec<u8>,
    /// The plaintext being sealed, kept between lines.
    scratch: Vec<u8>,
}

impl Sealer {
    /// A new data key for the segment whose first event is `first_seq`, wrapped by the ring's
    /// current key; `None` when the ring has none (segments are written in plain).
    pub fn new(keyring: &Keyring, first_seq: u64) -> Result<Option<Self>, String> {
        let Some(kek) = &keyring.current else {
            return Ok(None);
        };
        let random = |bytes: &mut [u8]| {
            aws_lc_rs::rand::fill(bytes)
                .map_err(|_| "the system's random generator failed".to_owned())
        };
        let mut data_key = [0u8; KEY_BYTES];
        random(&mut data_key)?;
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut prefix = [0u8; 4];
        random(&mut prefix)?;
        let mut wrapped = data_key.to_vec();
        kek.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(WRAP_AAD),
                &mut wrapped,
            )
            .map_err(|_| "the data key could not be wrapped".to_owned())?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&wrapped);
        // Written by hand: the header's first member is what readers recognise it by.
        let header = format!(
            "{{\"invoiceguard_segment\":1,\"cipher\":\"AES-256-GCM\",\"key_id\":\"{}\",\"data_key\":\"{}\",\"first_seq\":{first_seq}}}\n",
            kek.id,
            B64.encode(sealed)
        )
        .into_bytes();
        let key = UnboundKey::new(&AES_256_GCM, &data_key)
            .map_err(|_| "the data key could not be used".to_owned())?;
        Ok(Some(Self {
            key: LessSafeKey::new(key),
            prefix,
            counter: 0,
            aad: line_aad(first_seq),
            header,
            scratch: Vec::with_capacity(2048),
        }))
    }

    /// Seals one event's line (without its newline) into `out` (cleared first): nonce,
    /// ciphertext and tag, escaped, and a newline.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        self.scratch.clear();
        self.scratch.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.aad[..]),
                &mut self.scratch,
            )
            .map_err(|_| "an audit event could not be sealed".to_owned())?;
        out.clear();
        escape(&nonce, out);
        escape(&self.scratch, out);
        escape(tag.as_ref(), out);
        out.push(b'\n');
        Ok(())
    }
}

/// Appends `bytes` with every newline written `\n` and every backslash `\\`.
fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for at in memchr::memchr2_iter(b'\n', b'\\', bytes) {
        out.extend_from_slice(&bytes[start..at]);
        out.extend_from_slice(if bytes[at] == b'\n' { b"\\n" } else { b"\\\\" });
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The bytes of an escaped line; `None` when an escape is not one of the two.
fn unescape(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len());
    let mut start = 0;
    while let Some(offset) = memchr::memchr(b'\\', &line[start..]) {
        let at = start + offset;
        out.extend_from_slice(&line[start..at]);
        match line.get(at + 1) {
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            _ => return None,
        }
        start = at + 2;
    }
    out.extend_from_slice(&line[start..]);
    Some(out)
}

/// Whether a line is a segment header.
pub fn is_header(line: &[u8]) -> bool {
    line.starts_with(HEADER_START)
}

/// A segment header, as read.
#[derive(serde::Deserialize)]
struct Header {
    key_id: String,
    data_key: String,
    first_seq: u64,
}

/// How a segment's lines are read.
enum Mode {
    /// No header seen (yet): lines are plaintext events.
    Plain,
    /// Sealed with this data key.
    Sealed { key: LessSafeKey, aad: [u8; 16] },
    /// Sealed with a key this process does not hold, or a header that cannot be read.
    Unreadable(String),
}

/// Reads one segment's lines: the header sets how the following lines are opened.
pub struct LineDecoder {
    mode: Mode,
}

/// One line, decoded.
pub enum Decoded<'a> {
    /// An event's line (plaintext).
    Event(Cow<'a, [u8]>),
    /// The segment's header: not an event.
    Header,
    /// A line that cannot be opened: why.
    Unreadable(String),
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDecoder {
    /// A decoder for the start of a segment (plaintext until a header says otherwise).
    pub fn new() -> Self {
        Self { mode: Mode::Plain }
    }

    /// A decoder for a segment read from the middle: its first line (the header, if any) read.
    pub fn for_segment(path: &Path) -> std::io::Result<Self> {
        use std::io::Read;
        let mut decoder = Self::new();
        let mut first = Vec::with_capacity(512);
        std::fs::File::open(path)?
            .take(4096)
            .read_to_end(&mut first)?;
        if let Some(end) = memchr::memchr(b'\n', &first) {
            first.truncate(end);
        }
        if is_header(&first) {
            decoder.header(&first);
        }
        Ok(decoder)
    }

    /// Why the segment's lines cannot be opened (its key is not given, its header unreadable).
    pub fn unreadable(&self) -> Option<&str> {
        match &self.mode {
            Mode::Unreadable(why) => Some(why),
            Mode::Plain | Mode::Sealed { .. } => None,
        }
    }

    fn header(&mut self, line: &[u8]) {
        self.mode = match open_header(line) {
            Ok((key, aad)) => Mode::Sealed { key, aad },
            Err(why) => Mode::Unreadable(why),
        };
    }

    /// Decodes one line (without its newline).
    pub fn line<'a>(&mut self, line: &'a [u8]) -> Decoded<'a> {
        if is_header(line) {
            self.header(line);
            return Decoded::Header;
        }
        match &self.mode {
            Mode::Plain => Decoded::Event(Cow::Borrowed(line)),
            Mode::Unreadable(why) => Decoded::Unreadable(why.clone()),
            Mode::Sealed { key, aad } => match open_line(key, aad, line) {
                Ok(plain) => Decoded::Event(Cow::Owned(plain)),
                Err(why) => Decoded::Unreadable(why),
            },
        }
    }
}

/// The data key a header wraps, opened with the key it names.
fn open_header(line: &[u8]) -> Result<(LessSafeKey, [u8; 16]), String> {
    let header: Header = serde_json::from_slice(line)
        .map_err(|error| format!("unreadable segment header: {error}"))?;
    let kek = installed_key(&header.key_id).ok_or_else(|| {
        format!(
            "sealed with key {}, which is not given (`--encryption-key`, or `[audit] decryption_key_files`)",
            header.key_id
        )
    })?;
    let mut sealed = B64
        .decode(&header.data_key)
        .map_err(|_| "the segment header's data key is not base64".to_owned())?;
    if sealed.len() < NONCE_LEN {
        return Err("the segment header's data key is cut short".to_owned());
    }
    let mut wrapped = sealed.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&sealed)
        .map_err(|_| "the segment header's nonce is not 12 bytes".to_owned())?;
    let data_key = kek
        .open_in_place(nonce, Aad::from(WRAP_AAD), &mut wrapped)
        .map_err(|_| {
            format!(
                "the data key does not open with key {}: changed",
                header.key_id
            )
        })?;
    let key = UnboundKey::new(&AES_256_GCM, data_key)
        .map_err(|_| "the segment's data key is not an AES-256 key".to_owned())?;
    Ok((LessSafeKey::new(key), line_aad(header.first_seq)))
}

/// One sealed line opened.
fn open_line(key: &LessSafeKey, aad: &[u8; 16], line: &[u8]) -> Result<Vec<u8>, String> {
    let mut raw = unescape(line)
        .ok_or_else(|| "a sealed line with a broken escape (changed, or torn)".to_owned())?;
    if raw.len() < NONCE_LEN {
        return Err("a sealed line cut short".to_owned());
    }
    let mut sealed = raw.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&raw)
        .map_err(|_| "a sealed line without its nonce".to_owned())?;
    let plain = key
        .open_in_place(nonce, Aad::from(&aad[..]), &mut sealed)
        .map_err(|_| {
            "a sealed line that does not open: changed, or moved from another segment".to_owned()
        })?;
    let length = plain.len();
    sealed.truncate(length);
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(name: &str) -> (Keyring, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "invoiceguard-at-rest-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("spool.key");
        std::fs::write(&file, generate_key().unwrap()).unwrap();
        (Keyring::load(Some(&file), &[]).unwrap(), file)
    }

    #[test]
    fn a_sealed_segment_reads_back_and_hides_its_events() {
        let (keyring, _) = keyring("seal");
        install(&keyring);
        let mut sealer = Sealer::new(&keyring, 41).unwrap().unwrap();
        let event = br#"{"seq":41,"actor":{"id":"alice"}}"#;
        let mut line = Vec::new();
        sealer.seal(event, &mut line).unwrap();
        assert!(!line.windows(5).any(|w| w == b"alice"));
        let mut decoder = LineDecoder::new();
        let header = &sealer.header[..sealer.header.len() - 1];
        assert!(matches!(decoder.line(header), Decoded::Header));
        match decoder.line(&line[..line.len() - 1]) {
            Decoded::Event(plain) => assert_eq!(&*plain, event),
            _ => panic!("not opened"),
        }
        // A changed byte, or a line moved to another segment, does not open.
        let mut changed = line.clone();
        changed[20] = if changed[20] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            decoder.line(&changed[..changed.len() - 1]),
            Decoded::Unreadable(_)
        ));
        let mut other = Sealer::new(&keyring, 99).unwrap().unwrap();
        let mut elsewhere = LineDecoder::new();
        let header = &other.header.clone();
        assert!(matches!(
            elsewhere.line(&header[..header.len() - 1]),
            Decoded::Header
        ));
        let mut foreign = Vec::new();
        other.seal(event, &mut foreign).unwrap();
        assert!(matches!(
            decoder.line(&foreign[..foreign.len() - 1]),
            Decoded::Unreadable(_)
        ));
        assert!(matches!(
            elsewhere.line(&line[..line.len() - 1]),
            Decoded::Unreadable(_)
        ));
    }

    #[test]
    fn escapes_round_trip_every_byte() {
        let bytes: Vec<u8> = (0..=255u8).chain([b'\n', b'\\', b'\\', b'n']).collect();
        let mut out = Vec::new();
        escape(&bytes, &mut out);
        assert!(!out.contains(&b'\n'));
        assert_eq!(unescape(&out).unwrap(), bytes);
        assert!(unescape(b"a\\x").is_none());
    }

    #[test]
    fn a_key_not_held_is_named_and_plain_lines_pass() {
        let (keyring, file) = keyring("unknown");
        let sealer = Sealer::new(&keyring, 1).unwrap().unwrap();
        // Not installed in this process: named by its id.
        let (other, _) = self::keyring("other");
        let mut decoder = LineDecoder::new();
        let header = &sealer.header[..sealer.header.len() - 1];
        let id = keyring.current_id().unwrap().to_owned();
        if installed_key(&id).is_none() {
            assert!(matches!(decoder.line(header), Decoded::Header));
            match decoder.line(b"AAAA") {
                Decoded::Unreadable(why) => assert!(why.contains(&id), "{why}"),
                _ => panic!("opened without its key"),
            }
        }
        drop(other);
        let mut plain = LineDecoder::new();
        assert!(matches!(plain.line(br#"{"seq":1}"#), Decoded::Event(_)));
        assert_eq!(
            Keyring::load(Some(&file), &[]).unwrap().current_id(),
            Some(id.as_str())
        );
        std::fs::write(&file, "short").unwrap();
        assert!(
            Keyring::load(Some(&file), &[])
                .unwrap_err()
                .contains("does not hold a key")
        );
    }
}
