process MAP {
    tag "${meta.id} <- ${rna_meta.id}"
    label 'process_gpu'

    input:
    tuple val(meta), path(spatial), val(rna_meta), path(rna)
    path model

    output:
    tuple val(meta), path("${prefix}.mapped.h5ad")    , emit: h5ad
    tuple val(meta), path("${prefix}.mapped.rna.h5ad"), emit: rna
    path "versions.yml"                               , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}__${rna_meta.id}"
    """
    scprospatial_map.py --model ${model} --rna ${rna} --spatial ${spatial} --out ${prefix}.mapped.h5ad --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    echo "\\"${task.process}\\": {scprospatial: \$(scprospatial --version | cut -d' ' -f2)}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}__${rna_meta.id}"
    """
    touch ${prefix}.mapped.h5ad ${prefix}.mapped.rna.h5ad
    echo "\\"${task.process}\\": {scprospatial: stub}" > versions.yml
    """
}
