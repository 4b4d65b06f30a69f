//! The Poincaré disk as a picture: the 2-D view of ball positions and the geodesic arc between
//! two points of the disk, as the web view draws them. Pure arithmetic, no clock.

use serde::{Deserialize, Serialize};

/// Below this `|det|` (see [`geodesic`]) two points count as collinear with the origin.
const COLLINEAR: f64 = 1e-9;

/// The 2-D view of a point of the Poincaré ball of any dimension: its first two coordinates,
/// i.e. the orthogonal projection onto the plane of the axes e₀, e₁ (`None` below 2
/// coordinates or with a non-finite one).
///
/// In 2 dimensions this is the point itself. In more, it is a projection, not an isometry:
/// `|(x₀, x₁)| ≤ |x| < 1`, so the image stays inside the disk, and points that differ only in
/// coordinates 2… coincide. The tree embedding puts a node's children in the coordinate planes
/// (e₀,e₁), (e₂,e₃), … in turn (`geometry::tree::sphere_slot`), so children placed outside the
/// first plane are drawn at (close to) their parent's spot.
pub fn project(point: &[f64]) -> Option<[f64; 2]> {
    match point {
        [x, y, ..] if x.is_finite() && y.is_finite() => Some([*x, *y]),
        _ => None,
    }
}

/// How to draw the geodesic between two points of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Geodesic {
    /// The points are collinear with the origin: the geodesic is the straight segment.
    Line { from: [f64; 2], to: [f64; 2] },
    /// The minor arc, from `from` to `to`, of the circle with centre (`cx`, `cy`) and radius
    /// `r`; `ccw` when it runs counter-clockwise in the disk's own coordinates (y up).
    Arc {
        from: [f64; 2],
        to: [f64; 2],
        cx: f64,
        cy: f64,
        r: f64,
        ccw: bool,
    },
}

/// The geodesic of the Poincaré disk through `a` and `b` (both with norm < 1).
///
/// Geodesics are diameters and arcs of circles orthogonal to the unit circle. A circle with
/// centre c and radius r is orthogonal to the unit circle iff |c|² = 1 + r²; it passes through
/// a iff |c − a|² = r². Subtracting gives the linear condition 2 c·a = 1 + |a|², and likewise
/// 2 c·b = 1 + |b|², so
///
/// ```text
/// [aₓ a_y] [cₓ]   [(1 + |a|²)/2]
/// [bₓ b_y] [c_y] = [(1 + |b|²)/2],   r = √(|c|² − 1),
/// ```
///
/// solved by Cramer's rule. When det = aₓb_y − a_yb_x ≈ 0 (a, b and the origin on one line, or
/// one of them at the origin) the geodesic is the straight segment. The part of the circle
/// inside the disk is less than half of it, so the geodesic is the minor arc from a to b;
/// `ccw` tells its direction: the sign of (a − c) × (b − c).
pub fn geodesic(a: [f64; 2], b: [f64; 2]) -> Geodesic {
    let det = a[0] * b[1] - a[1] * b[0];
    if det.abs() < COLLINEAR {
        return Geodesic::Line { from: a, to: b };
    }
    let ra = (1.0 + a[0] * a[0] + a[1] * a[1]) / 2.0;
    let rb = (1.0 + b[0] * b[0] + b[1] * b[1]) / 2.0;
    let cx = (ra * b[1] - a[1] * rb) / det;
    let cy = (a[0] * rb - ra * b[0]) / det;
    let r2 = cx * cx + cy * cy - 1.0;
    if r2.is_nan() || r2 <= 0.0 || !r2.is_finite() {
        return Geodesic::Line { from: a, to: b };
    }
    let cross = (a[0] - cx) * (b[1] - cy) - (a[1] - cy) * (b[0] - cx);
    Geodesic::Arc {
        from: a,
        to: b,
        cx,
        cy,
        r: r2.sqrt(),
        ccw: cross > 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64) -> bool {
        (x - y).abs() < 1e-9
    }

    #[test]
    fn the_arcs_circle_is_orthogonal_to_the_unit_circle_and_passes_through_both_points() {
        let pairs = [
            ([0.5, 0.1], [-0.3, 0.6]),
            ([0.9, 0.0], [0.0, 0.9]),
            ([-0.2, -0.7], [0.65, -0.1]),
            ([0.01, 0.3], [0.3, 0.01]),
        ];
        for (a, b) in pairs {
            let Geodesic::Arc { cx, cy, r, .. } = geodesic(a, b) else {
                panic!("{a:?} {b:?} are not collinear with the origin")
            };
            assert!(close(cx * cx + cy * cy, 1.0 + r * r), "not orthogonal for {a:?} {b:?}");
            for p in [a, b] {
                assert!(
                    close(((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt(), r),
                    "{p:?} off the circle"
                );
            }
        }
    }

    #[test]
    fn the_arc_runs_inside_the_disk_in_the_direction_it_names() {
        for (a, b) in [
            ([0.5, 0.1], [-0.3, 0.6]),
            ([-0.3, 0.6], [0.5, 0.1]),
            ([0.2, -0.8], [-0.6, -0.5]),
        ] {
            let Geodesic::Arc { cx, cy, r, ccw, .. } = geodesic(a, b) else {
                panic!()
            };
            let angle = |p: [f64; 2]| (p[1] - cy).atan2(p[0] - cx);
            let mut sweep = angle(b) - angle(a);
            // The signed sweep in the named direction.
            if ccw && sweep < 0.0 {
                sweep += std::f64::consts::TAU;
            }
            if !ccw && sweep > 0.0 {
                sweep -= std::f64::consts::TAU;
            }
            assert!(sweep.abs() < std::f64::consts::PI, "not the minor arc: {sweep}");
            let mid = angle(a) + sweep / 2.0;
            let (mx, my) = (cx + r * mid.cos(), cy + r * mid.sin());
            assert!(
                mx * mx + my * my < 1.0,
                "midpoint ({mx}, {my}) of {a:?}→{b:?} outside the disk"
            );
        }
    }

    #[test]
    fn points_collinear_with_the_origin_are_joined_by_a_straight_segment() {
        assert!(matches!(geodesic([0.2, 0.2], [-0.5, -0.5]), Geodesic::Line { .. }));
        assert!(matches!(geodesic([0.0, 0.0], [0.3, -0.4]), Geodesic::Line { .. }));
    }

    #[test]
    fn the_view_of_a_ball_point_is_its_first_two_coordinates() {
        assert_eq!(project(&[0.1, -0.2]), Some([0.1, -0.2]));
        assert_eq!(project(&[0.1, -0.2, 0.5, 0.1]), Some([0.1, -0.2]));
        assert_eq!(project(&[0.1]), None);
        assert_eq!(project(&[f64::NAN, 0.0]), None);
    }
}
