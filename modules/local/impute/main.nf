process IMPUTE {
    tag "${meta.id}"
    label 'process_gpu'

    conda "${moduleDir}/../../../containers/environment.yml"
    // tasks given a GPU (profile gpu) run the CUDA image, built from the same install; others the CPU image
    container "${task.accelerator ? 'ghcr.io/scprospatial/scprospatial:0.1.0-cuda' : 'ghcr.io/scprospatial/scprospatial:0.1.0'}"

    input:
    tuple val(meta), path(rna)
    path model

    output:
    tuple val(meta), path("${prefix}.imputed.h5ad"), emit: h5ad
    path "versions.yml"                            , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scprospatial_impute.py ${rna} --model ${model} --out ${prefix}.imputed.h5ad --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.imputed.h5ad
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
