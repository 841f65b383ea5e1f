//! Screenshots decoded: what the status page's figures look like in pixels.

/// A decoded PNG: width, height and RGBA pixels.
pub(crate) struct Image {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) rgba: Vec<u8>,
}

impl Image {
    /// Decodes a PNG (any colour type Chromium writes) to 8-bit RGBA.
    pub(crate) fn decode(png_bytes: &[u8]) -> Self {
        let mut d = png::Decoder::new(std::io::Cursor::new(png_bytes));
        d.set_transformations(
            png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
        );
        let mut r = d.read_info().expect("a PNG header");
        let mut buf = vec![0; r.output_buffer_size().expect("a sane PNG size")];
        let info = r.next_frame(&mut buf).expect("PNG pixels");
        buf.truncate(info.buffer_size());
        assert_eq!(
            info.color_type,
            png::ColorType::Rgba,
            "RGBA after the transformations"
        );
        Self {
            width: info.width,
            height: info.height,
            rgba: buf,
        }
    }

    /// The pixel at (x, y) as RGB.
    pub(crate) fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Pixels within `tol` of `rgb` in each channel, in the rectangle (x, y, w, h).
    pub(crate) fn count_near(&self, rgb: [u8; 3], tol: u8, area: (u32, u32, u32, u32)) -> usize {
        let (x0, y0, w, h) = area;
        let mut n = 0;
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let p = self.rgb(x, y);
                if p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= tol) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Distinct colours (a blank or one-colour screenshot has one or two).
    pub(crate) fn colours(&self) -> usize {
        let mut set = std::collections::HashSet::new();
        for p in self.rgba.chunks_exact(4) {
            set.insert([p[0], p[1], p[2]]);
        }
        set.len()
    }
}
