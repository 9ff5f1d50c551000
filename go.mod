module github.com/gdirty/gdirty

go 1.26.8
