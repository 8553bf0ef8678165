"""AnnData keys and names shared by every module (the contract in DESIGN.md).

Use these constants instead of string literals so a key is spelled in one place.
"""

# --- measured modalities -------------------------------------------------------------
PROTEIN = "protein"                      # obsm: measured protein, DataFrame, canonical names (normalised)
PROTEIN_RAW = "protein_raw"              # obsm: measured protein before normalisation (counts/intensities)
ISOTYPE_CONTROLS = "isotype_controls"    # obsm: isotype-control counts set aside by prepare (DataFrame)
COUNTS_LAYER = "counts"                  # layers: raw RNA UMI counts (X holds log-normalised values)
RAW_LAYER = "raw"                        # layers: raw imaging intensities of a spatial table
SPATIAL = "spatial"                      # obsm: coordinates, n x 2 or n x 3
LIBRARY_ID = "library_id"                # obs: image of each cell when one input holds several (squidpy's name)

# --- predictions ------------------------------------------------------------------------
PROTEIN_PREDICTED = "protein_predicted"          # obsm (DataFrame) and uns (metadata)
PROTEIN_PREDICTED_SD = "protein_predicted_sd"    # obsm: predictive SD, same columns
PROTEIN_PREDICTED_LOWER = "protein_predicted_lower"
PROTEIN_PREDICTED_UPPER = "protein_predicted_upper"
EMBEDDING = "X_scprospatial"                     # obsm: joint-space cell embedding
SD_SUFFIX = "_sd"   # key_added + SD_SUFFIX: the SD of a prediction written under key_added (PROTEIN_PREDICTED_SD)

# --- reliability of each predicted protein (inside uns[key_added]) ----------------------------
PROTEIN_TABLE = "proteins"          # uns[key_added]['proteins']: DataFrame, one row per predicted protein
RELIABILITY = "reliability"         # uns[key_added]['reliability']: classes, detection rule, provenance, coverage
SUPPORT = "support"                 # column of PROTEIN_TABLE: how the protein is supported (below)
SUPPORT_MEASURED = "measured"                   # measured in training: predicted by the translator head
SUPPORT_DETECTED = "gene_link_detected"         # through its gene link, coding gene detected in the input
SUPPORT_UNDETECTED = "gene_link_undetected"     # through its gene link, coding gene not detected in the input
SUPPORT_CLASSES = (SUPPORT_MEASURED, SUPPORT_DETECTED, SUPPORT_UNDETECTED)   # best supported first
DETECTED_FRACTION = "detected_fraction"         # column: share of input cells with coding-gene count > 0
EXPECTED_PEARSON = "expected_pearson"           # column: development median Pearson of the class, same cohort
EXPECTED_PEARSON_NEW_COHORT = "expected_pearson_new_cohort"   # ... on a cohort the model was not trained on

# --- spatial graph (squidpy-compatible) -------------------------------------------------
SPATIAL_CONNECTIVITIES = "spatial_connectivities"  # obsp
SPATIAL_DISTANCES = "spatial_distances"            # obsp
SPATIAL_NEIGHBORS = "spatial_neighbors"            # uns

# --- mapping ------------------------------------------------------------------------------
MAPPING_CONFIDENCE = "mapping_confidence"  # obs
MAPPED_LOCATION = "mapped_location"        # obsm (scRNA-seq side): weighted mean position on the image
MAPPED_LOCATION_SD = "mapped_location_sd"  # obs (scRNA-seq side): spread of that position (coordinate units)
MAPPED_CELLS = "mapped_cells"              # obsm (scRNA-seq side): sparse location distribution over imaged cells
MAPPED_NICHE = "mapped_niche"              # obsm (scRNA-seq side): cell-type mix around the imaged cells it maps to
MAPPED_CELL_TYPE = "mapped_cell_type"      # obs, both sides: weighted vote of the other side's labels
MAPPING_WEIGHT = "mapping_weight"          # obs (scRNA-seq side): total mapping weight received

# --- provenance ---------------------------------------------------------------------------
UNS = "scprospatial"        # uns[UNS] holds {'kind', 'dataset', 'source', 'normalisation', ...}
NORMALISATION = "normalisation"
KIND = "kind"               # 'citeseq' | 'rna' | 'spatial'
DATASET = "dataset"
BATCH = "batch"             # obs column: cohort / batch of each cell
CELL_TYPE_KEY = "cell_type_key"  # uns[UNS] entry naming the obs column of cell-type labels
LIBRARY_KEY = "library_key"      # uns[UNS] entry naming the obs column of images: graphs and statistics per image
SPATIALDATA = "spatialdata"      # uns[UNS] entry: the SpatialData store, table and elements the cells came from

KINDS = ("citeseq", "rna", "spatial")
