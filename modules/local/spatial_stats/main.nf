process SPATIAL_STATS {
    tag "${meta.id}"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"
    container 'ghcr.io/scprospatial/scprospatial:0.1.0'

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}", type: 'dir'), emit: dir
    path "versions.yml"                           , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scprospatial_spatial_stats.py ${h5ad} --out ${prefix} --threads ${task.cpus} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix} && touch ${prefix}/moran.csv ${prefix}/${prefix}.stats.h5ad
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
