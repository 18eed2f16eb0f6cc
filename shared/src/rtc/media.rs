//! Media a peer sends and counts, engine-neutral: a [`Source`] is frames and a pace, the
//! engine turns it into a track; [`Received`] counts what arrives on the remote tracks.
//!
//! Generated frames are not a picture or a sound; they are sized and paced like VP8 at 30 fps
//! and Opus at 50 packets/s, so RTP, SRTP, congestion feedback and the counters all see real
//! traffic. Real media comes from files: VP8 in IVF, Opus in Ogg (read whole, sent in a loop),
//! parsed with webrtc-rs's media readers (a parsing library: no engine state).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use webrtc::media::io::ivf_reader::IVFReader;
use webrtc::media::io::ogg_reader::OggReader;

/// A track's kind; the codec follows from it (VP8 for video, Opus for audio).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// Packets and bytes that arrived on the remote tracks, by kind.
#[derive(Default)]
pub struct Received {
    pub video_packets: AtomicU64,
    pub video_bytes: AtomicU64,
    pub audio_packets: AtomicU64,
    pub audio_bytes: AtomicU64,
    /// Remote tracks seen (a renegotiation that adds one shows here).
    pub tracks: AtomicU64,
}

impl Received {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "video_packets": self.video_packets.load(Ordering::Relaxed),
            "video_bytes": self.video_bytes.load(Ordering::Relaxed),
            "audio_packets": self.audio_packets.load(Ordering::Relaxed),
            "audio_bytes": self.audio_bytes.load(Ordering::Relaxed),
            "tracks": self.tracks.load(Ordering::Relaxed),
        })
    }

    /// A remote track appeared.
    pub fn track_added(&self) {
        self.tracks.fetch_add(1, Ordering::Relaxed);
    }

    /// One RTP packet of `kind` with `payload` bytes arrived.
    pub fn packet(&self, kind: Kind, payload: usize) {
        let (packets, bytes) = match kind {
            Kind::Audio => (&self.audio_packets, &self.audio_bytes),
            Kind::Video => (&self.video_packets, &self.video_bytes),
        };
        packets.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(payload as u64, Ordering::Relaxed);
    }
}

/// What a local track sends: `frames` in turn (from the first again after the last), one
/// every `every`.
pub struct Source {
    pub kind: Kind,
    /// The track id.
    pub id: String,
    pub frames: Vec<Bytes>,
    pub every: Duration,
}

impl Source {
    /// ~30 fps of 1.2 KB frames (≈ 300 kbit/s).
    pub fn video(id: &str) -> Self {
        // A VP8 key-frame start (so a browser receiving it does not stall on a missing header).
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        frame.resize(1200, 0x55);
        Source {
            kind: Kind::Video,
            id: id.to_owned(),
            frames: vec![Bytes::from(frame)],
            every: Duration::from_millis(33),
        }
    }

    /// 50 packets/s of 60-byte Opus-sized frames.
    pub fn audio(id: &str) -> Self {
        let mut frame = vec![0xfc];
        frame.resize(60, 0xff);
        Source {
            kind: Kind::Audio,
            id: id.to_owned(),
            frames: vec![Bytes::from(frame)],
            every: Duration::from_millis(20),
        }
    }

    /// VP8 frames from an IVF file, at the file's frame rate.
    pub fn video_file(id: &str, path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (mut reader, header) = IVFReader::new(std::io::BufReader::new(file))
            .map_err(|e| format!("{}: not an IVF file: {e}", path.display()))?;
        if &header.four_cc != b"VP80" {
            return Err(format!(
                "{}: {} video; only VP8 is sent",
                path.display(),
                String::from_utf8_lossy(&header.four_cc)
            ));
        }
        let mut frames = Vec::new();
        while let Ok((frame, _)) = reader.parse_next_frame() {
            frames.push(frame.freeze());
        }
        if frames.is_empty() {
            return Err(format!("{}: no frames", path.display()));
        }
        let (num, den) = (header.timebase_numerator.max(1), header.timebase_denominator.max(1));
        let every = Duration::from_secs_f64(f64::from(num) / f64::from(den)).max(Duration::from_millis(1));
        Ok(Source { kind: Kind::Video, id: id.to_owned(), frames, every })
    }

    /// Opus pages from an Ogg file, one every 20 ms (the usual Opus frame).
    pub fn audio_file(id: &str, path: &Path) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (mut reader, _) = OggReader::new(std::io::BufReader::new(file), true)
            .map_err(|e| format!("{}: not an Ogg Opus file: {e}", path.display()))?;
        let mut frames = Vec::new();
        while let Ok((page, _)) = reader.parse_next_page() {
            // The two header pages (OpusHead, OpusTags) are not audio.
            if !page.starts_with(b"OpusHead") && !page.starts_with(b"OpusTags") {
                frames.push(page.freeze());
            }
        }
        if frames.is_empty() {
            return Err(format!("{}: no audio pages", path.display()));
        }
        Ok(Source { kind: Kind::Audio, id: id.to_owned(), frames, every: Duration::from_millis(20) })
    }
}
