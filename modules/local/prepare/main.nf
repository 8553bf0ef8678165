// A samplesheet value as one shell word: single-quoted, with any ' inside closed, escaped and reopened
def shellQuote(value) {
    "'" + value.toString().replace("'", "'\\''") + "'"
}

process PREPARE {
    tag "${meta.id}"
    label 'process_low'

    conda "${moduleDir}/../../../containers/environment.yml"
    container 'ghcr.io/scprospatial/scprospatial:0.1.0'

    input:
    tuple val(meta), path(input, stageAs: 'input/*')    // staged apart: an input named <id>.h5ad is never the output

    output:
    tuple val(meta), path("${prefix}.h5ad"), emit: h5ad
    path "versions.yml"                    , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    def files = shellQuote(input instanceof List ? input.join(',') : input)
    // optional samplesheet columns -> format overrides (marker_cols are ';'-separated in the sheet)
    def options = [batch: meta.batch, x_col: meta.x_col, y_col: meta.y_col, z_col: meta.z_col,
                   marker_cols: meta.marker_cols ? meta.marker_cols.tokenize(';')*.trim().join(',') : null,
                   cell_type_col: meta.cell_type_col, id_col: meta.id_col, protein_key: meta.protein_key,
                   table_name: meta.table_name, coordinate_system: meta.coordinate_system]
    def overrides = options.findAll { _k, v -> v }.collect { k, v -> "--${k.replace('_', '-')} ${shellQuote(v)}" }.join(' ')
    """
    scprospatial_prepare.py ${files} --outdir . --kind ${meta.kind} --dataset ${prefix} ${overrides} --threads ${task.cpus} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.h5ad
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
