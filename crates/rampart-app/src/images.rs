//! Re-encoding uploaded raster images so that none of their metadata survives (EXIF with its GPS
//! position, XMP, comments, text chunks, trailing data — and anything smuggled after the image).
//! Decoding is bounded: the dimensions in the header are checked against the pixel limit before
//! any pixel is decoded (a decompression bomb is a tiny file claiming huge dimensions), and the
//! decoder's allocations are capped. The picture is read from, and written to, sealed blobs one
//! chunk at a time; only the decoded pixels are in memory. Synchronous: run on the blocking pool.

use std::io::BufReader;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::codecs::png::{PngDecoder, PngEncoder};
use image::codecs::webp::{WebPDecoder, WebPEncoder};
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageError, Limits};
use rampart_core::files::FileKind;
use rampart_core::limits;
use rampart_store::{BlobReader, BlobWriter, FinishedBlob};

use crate::AppError;

/// JPEG quality of a re-encoded photo: visually lossless for photographs.
const JPEG_QUALITY: u8 = 90;

/// Why an image was not accepted.
#[derive(Debug)]
pub(crate) enum ImageRefusal {
    /// More pixels than the limit (or, for an animation, in all its frames).
    TooManyPixels { pixels_max: u64 },
    /// Not a decodable image of its type.
    Undecodable(String),
    /// The blob could not be read or written.
    Storage(std::io::Error),
}

impl ImageRefusal {
    pub(crate) fn into_app_error(self) -> AppError {
        match self {
            ImageRefusal::TooManyPixels { pixels_max } => {
                AppError::TooLarge(format!("Images may have at most {pixels_max} pixels."))
            }
            ImageRefusal::Undecodable(cause) => {
                tracing::info!(%cause, "an uploaded image could not be decoded");
                AppError::FileType("The image could not be decoded.".to_owned())
            }
            ImageRefusal::Storage(error) => AppError::Internal(format!("image blob: {error}")),
        }
    }
}

impl From<ImageError> for ImageRefusal {
    fn from(error: ImageError) -> Self {
        match error {
            // The picture ends early: the image is broken, not the storage.
            ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                ImageRefusal::Undecodable(io.to_string())
            }
            ImageError::IoError(io) => ImageRefusal::Storage(io),
            ImageError::Limits(_) => ImageRefusal::TooManyPixels { pixels_max: limits::IMAGE_PIXELS_MAX },
            other => ImageRefusal::Undecodable(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ImageRefusal {
    fn from(error: std::io::Error) -> Self {
        ImageRefusal::Storage(error)
    }
}

fn limits_for(pixels_max: u64) -> Limits {
    let side_max = u32::try_from(pixels_max).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side_max);
    limits.max_image_height = Some(side_max);
    limits.max_alloc = Some(limits::IMAGE_ALLOC_BYTES_MAX);
    limits
}

/// Refuses a decoder whose image is larger than `pixels_max`, before it decodes anything.
fn checked<D: ImageDecoder>(mut decoder: D, pixels_max: u64) -> Result<D, ImageRefusal> {
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > pixels_max {
        return Err(ImageRefusal::TooManyPixels { pixels_max });
    }
    decoder.set_limits(limits_for(pixels_max))?;
    Ok(decoder)
}

/// Decodes a still image, turned upright by its orientation tag (which is about to be dropped).
fn upright<D: ImageDecoder>(decoder: D, pixels_max: u64) -> Result<DynamicImage, ImageRefusal> {
    let mut decoder = checked(decoder, pixels_max)?;
    let orientation = decoder.orientation()?;
    let mut picture = DynamicImage::from_decoder(decoder)?;
    picture.apply_orientation(orientation);
    Ok(picture)
}

/// Re-encodes the image in `blob` into a new blob for the same file; the old one is removed when
/// dropped.
pub(crate) fn reencode(blob: &FinishedBlob, kind: FileKind, pixels_max: u64) -> Result<FinishedBlob, ImageRefusal> {
    let input = BufReader::new(blob.reader()?);
    let mut output = blob.sibling()?;
    match kind {
        FileKind::Png => {
            let picture = upright(PngDecoder::new(input)?, pixels_max)?;
            picture.write_with_encoder(PngEncoder::new(&mut output))?;
        }
        FileKind::Jpeg => {
            let picture = upright(JpegDecoder::new(input)?, pixels_max)?;
            let encoder = JpegEncoder::new_with_quality(&mut output, JPEG_QUALITY);
            DynamicImage::ImageRgb8(picture.to_rgb8()).write_with_encoder(encoder)?;
        }
        FileKind::Webp => {
            // Lossless: the only WebP encoder available; an animation keeps its first frame.
            let picture = upright(WebPDecoder::new(input)?, pixels_max)?;
            DynamicImage::ImageRgba8(picture.to_rgba8()).write_with_encoder(WebPEncoder::new_lossless(&mut output))?;
        }
        FileKind::Gif => reencode_gif(input, &mut output, pixels_max)?,
        other => return Err(ImageRefusal::Undecodable(format!("{other} is not a raster image"))),
    }
    Ok(output.finish()?)
}

/// An animated GIF frame by frame (one in memory at a time), its frames' pixels counted together
/// against the limit.
fn reencode_gif(input: BufReader<BlobReader>, output: &mut BlobWriter, pixels_max: u64) -> Result<(), ImageRefusal> {
    let decoder = checked(GifDecoder::new(input)?, pixels_max)?;
    let mut pixels_seen = 0u64;
    let mut over = false;
    let frames = decoder.into_frames().map(|frame| {
        let frame = frame?;
        let (width, height) = frame.buffer().dimensions();
        pixels_seen += u64::from(width) * u64::from(height);
        if pixels_seen > pixels_max {
            over = true;
            return Err(ImageError::Limits(image::error::LimitError::from_kind(
                image::error::LimitErrorKind::DimensionError,
            )));
        }
        Ok(frame)
    });
    let mut encoder = GifEncoder::new(&mut *output);
    encoder.set_repeat(Repeat::Infinite)?;
    let result = encoder.try_encode_frames(frames);
    drop(encoder);
    match result {
        Err(_) if over => Err(ImageRefusal::TooManyPixels { pixels_max }),
        other => Ok(other?),
    }
}
