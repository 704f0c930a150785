//! Finding and loading the four MNIST files in a directory (local, `gs://`, `memory://`).

use bytes::Bytes;
use storage::Location;

use crate::{Dataset, IdxError};

/// The training and test splits.
#[derive(Clone, Debug)]
pub struct MnistSplits {
    pub train: Dataset,
    pub test: Dataset,
}

/// One of the four MNIST files: what it is and the names it goes by.
struct MnistFile {
    description: &'static str,
    /// Canonical name first, then the common `.idx3-ubyte` spelling; each is also tried with
    /// `.gz`.
    stems: [&'static str; 2],
}

const TRAIN_IMAGES: MnistFile = MnistFile {
    description: "training images",
    stems: ["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
};
const TRAIN_LABELS: MnistFile = MnistFile {
    description: "training labels",
    stems: ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
};
const TEST_IMAGES: MnistFile = MnistFile {
    description: "test images",
    stems: ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"],
};
const TEST_LABELS: MnistFile = MnistFile {
    description: "test labels",
    stems: ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"],
};

impl MnistFile {
    /// File names in the order they are tried: `.gz` after the uncompressed name, for each
    /// spelling. Whatever the name, the content decides whether it is decompressed.
    fn candidates(&self) -> Vec<String> {
        self.stems
            .iter()
            .flat_map(|stem| [stem.to_string(), format!("{stem}.gz")])
            .collect()
    }

    fn missing(&self, dir: &Location) -> IdxError {
        IdxError::MissingFile {
            dir: dir.to_string(),
            description: self.description,
            looked_for: self.candidates(),
        }
    }
}

/// A file that was found: its location as shown to the user, and its bytes.
struct Found {
    name: String,
    bytes: Bytes,
}

/// Loads MNIST from `dir`, which holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each possibly gzip-compressed and
/// named with `.gz`, or spelled `train-images.idx3-ubyte` and so on. The four files are read
/// concurrently; decoding (CPU work, about a second for MNIST in a debug build) happens on the
/// calling thread.
pub async fn load_mnist(dir: &Location) -> Result<MnistSplits, IdxError> {
    decode_splits(read_files(dir.clone()).await?)
}

/// [`load_mnist`] for synchronous code; works from any thread, inside a tokio runtime too. The
/// same reads run on the storage crate's I/O runtime; decoding happens on the calling thread.
pub fn load_mnist_blocking(dir: &Location) -> Result<MnistSplits, IdxError> {
    let files = dir
        .block_on("read", read_files)
        .map_err(|source| IdxError::Storage {
            file: dir.to_string(),
            source: Box::new(source),
        })??;
    decode_splits(files)
}

/// Reads the four files concurrently, in the order [`decode_splits`] takes them.
async fn read_files(dir: Location) -> Result<[Found; 4], IdxError> {
    // All four reads finish before any error is reported, so the error is always the first
    // problem in file order, not whichever read happened to fail first.
    let (train_images, train_labels, test_images, test_labels) = futures::join!(
        find(&dir, &TRAIN_IMAGES),
        find(&dir, &TRAIN_LABELS),
        find(&dir, &TEST_IMAGES),
        find(&dir, &TEST_LABELS),
    );
    Ok([train_images?, train_labels?, test_images?, test_labels?])
}

/// The largest IDX file read: the payload cap plus the largest header (magic and 3 dimensions).
const MAX_IDX_FILE_BYTES: u64 = crate::idx::MAX_IDX_BYTES + 16;

/// Reads the first candidate that exists. Reading directly (rather than listing `dir`) needs
/// only read permission on the objects and costs one request when the file is there.
async fn find(dir: &Location, file: &MnistFile) -> Result<Found, IdxError> {
    for name in file.candidates() {
        let location = dir.join(&name);
        // The size is checked from the file's metadata before anything is read: an oversized
        // (or sparse) file is refused without costing memory.
        match location.read_at_most(MAX_IDX_FILE_BYTES).await {
            Ok(bytes) => {
                return Ok(Found {
                    name: location.to_string(),
                    bytes,
                });
            }
            Err(error) if error.is_not_found() => {}
            Err(source) => {
                return Err(IdxError::Storage {
                    file: location.to_string(),
                    source: Box::new(source),
                });
            }
        }
    }
    Err(file.missing(dir))
}

/// Decodes both splits, the training split on a second thread (decompression dominates).
fn decode_splits(
    [train_images, train_labels, test_images, test_labels]: [Found; 4],
) -> Result<MnistSplits, IdxError> {
    let decode = |images: &Found, labels: &Found| {
        Dataset::from_idx_bytes(&images.name, &images.bytes, &labels.name, &labels.bytes)
    };
    let (train, test) = std::thread::scope(|scope| {
        let train = scope.spawn(|| decode(&train_images, &train_labels));
        let test = decode(&test_images, &test_labels);
        (train.join(), test)
    });
    let train = match train {
        Ok(result) => result?,
        // Decoding does not panic on any input; if it ever does, that bug should surface as is.
        Err(panic) => std::panic::resume_unwind(panic),
    };
    Ok(MnistSplits { train, test: test? })
}
