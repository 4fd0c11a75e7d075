//! OTU clustering by abundance-sorted greedy centroids, as `vsearch --cluster_size` does.
//!
//! Sequences are taken in order of decreasing abundance (the order [`crate::fasta::dereplicate`]
//! gives). Each is searched against the centroids found so far (see [`crate::search`]): if one is
//! accepted at the clustering identity, the sequence joins that centroid's OTU; otherwise it
//! becomes the centroid of a new OTU. Because abundant sequences come first, centroids are the
//! most abundant, and most likely correct, sequence variants (Edgar 2013, *Nat. Methods*
//! 10:996; Rognes et al. 2016). The customary identity is 97 % (Stackebrandt & Goebel 1994,
//! *Int. J. Syst. Bacteriol.* 44:846), measured as vsearch's `--iddef 2` (see [`crate::align`]).

use crate::align::Scoring;
use crate::search::{SearchParams, WordIndex};

/// One OTU.
#[derive(Debug, Clone, PartialEq)]
pub struct Otu {
    /// Index (into the clustered sequences) of its centroid.
    pub centroid: usize,
    /// Indices of its members, the centroid first, in clustering order.
    pub members: Vec<usize>,
}

/// The outcome of clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    pub otus: Vec<Otu>,
    /// For each sequence: its OTU, and its identity (fraction) to the centroid (1 for centroids).
    pub assignment: Vec<(usize, f64)>,
}

/// Clusters `sequences`, which must already be in abundance order. `tick` is called after each
/// sequence with the number done; an error from it stops the clustering and is returned.
pub fn cluster_by_abundance<E>(
    sequences: &[&[u8]],
    params: &SearchParams,
    scoring: &Scoring,
    mut tick: impl FnMut(usize) -> Result<(), E>,
) -> Result<Clustering, E> {
    let mut index = WordIndex::new();
    let mut otus: Vec<Otu> = Vec::new();
    let mut assignment = Vec::with_capacity(sequences.len());
    for (number, sequence) in sequences.iter().enumerate() {
        let found = index.search(sequence, params, scoring);
        match found.best_accepted {
            Some(hit) => {
                otus[hit.target].members.push(number);
                assignment.push((hit.target, hit.identity()));
            }
            None => {
                let otu = index.add(sequence);
                debug_assert_eq!(otu, otus.len());
                otus.push(Otu { centroid: number, members: vec![number] });
                assignment.push((otu, 1.0));
            }
        }
        tick(number + 1)?;
    }
    Ok(Clustering { otus, assignment })
}
