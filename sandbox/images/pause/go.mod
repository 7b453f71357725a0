module gpucloud.local/sandbox/pause

go 1.22
