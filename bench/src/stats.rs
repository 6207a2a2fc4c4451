//! Repeated measurements and their summary.

/// The samples of one measured quantity (seconds, or GB/s), in the order taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The middle sample; the mean of the two middle ones for an even count.
    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }
}

/// Decimal gigabytes per second: what disk and memory vendors quote.
pub fn gbps(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Samples(vec![3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(Samples(vec![4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(Samples(vec![]).median(), None);
    }

    #[test]
    fn min_and_max_ignore_order() {
        let s = Samples(vec![0.5, 0.2, 0.9]);
        assert_eq!(s.min(), Some(0.2));
        assert_eq!(s.max(), Some(0.9));
    }

    #[test]
    fn a_gigabyte_in_a_second_is_one_gbps() {
        assert_eq!(gbps(1_000_000_000, 1.0), 1.0);
    }
}
