process SPATIAL_GRAPH {
    tag "${meta.id}"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"
    // given a GPU (profile gpu), the kNN graph runs the CUDA kernel in the CUDA image; otherwise the CPU image
    container "${task.accelerator ? 'ghcr.io/scprospatial/scprospatial:0.1.0-cuda' : 'ghcr.io/scprospatial/scprospatial:0.1.0'}"

    input:
    tuple val(meta), path(spatial)

    output:
    tuple val(meta), path("${prefix}.graph.h5ad"), emit: h5ad
    path "versions.yml"                          , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scprospatial_spatial_graph.py ${spatial} --out ${prefix}.graph.h5ad --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.graph.h5ad
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
