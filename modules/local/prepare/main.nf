process PREPARE {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(input)

    output:
    tuple val(meta), path("${prefix}.h5ad"), emit: h5ad
    path "versions.yml"                    , emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    def files = input instanceof List ? input.join(',') : input
    def batch = meta.batch ? "--batch ${meta.batch}" : ''
    """
    scprospatial_prepare.py ${files} --outdir . --kind ${meta.kind} --dataset ${prefix} ${batch} --threads ${task.cpus} ${args}
    echo "\\"${task.process}\\": {scprospatial: \$(scprospatial --version | cut -d' ' -f2)}" > versions.yml
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.h5ad
    echo "\\"${task.process}\\": {scprospatial: stub}" > versions.yml
    """
}
