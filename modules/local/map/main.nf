// The scRNA-seq cells of one RNA-only cohort mapped onto one imaged sample: meta.id is <spatial>__<rna>.
process MAP {
    tag "${meta.spatial_id} <- ${meta.rna_id}"
    label 'process_gpu'

    conda "${moduleDir}/../../../containers/environment.yml"
    // tasks given a GPU (profile gpu) run the CUDA image, built from the same install; others the CPU image
    container "${task.accelerator ? 'ghcr.io/scprospatial/scprospatial:0.1.0-cuda' : 'ghcr.io/scprospatial/scprospatial:0.1.0'}"

    input:
    tuple val(meta), path(spatial), path(rna)
    path model

    output:
    tuple val(meta), path("${prefix}.mapped.h5ad")    , emit: h5ad
    tuple val(meta), path("${prefix}.mapped.rna.h5ad"), emit: rna
    path "versions.yml"                               , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scprospatial_map.py --model ${model} --rna ${rna} --spatial ${spatial} --out ${prefix}.mapped.h5ad --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.mapped.h5ad ${prefix}.mapped.rna.h5ad
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
