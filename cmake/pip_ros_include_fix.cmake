# The ROS 2 wheels on PyPI were built in a manylinux container, and their
# exported CMake targets name Python/numpy include folders under
# /opt/python/cp311-cp311/... that do not exist on the user's machine.
# Rewrite those paths to this interpreter's folders. Does nothing on a normal
# ROS install (apt / JetPack), where no target names such a path.
function(fskd_fix_pip_ros_include_dirs)
  set(_bad_prefix "/opt/python/cp311-cp311")
  if(EXISTS "${_bad_prefix}")
    return()
  endif()
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
  get_property(_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs OR NOT _dirs MATCHES "${_bad_prefix}")
      continue()
    endif()
    set(_fixed "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^${_bad_prefix}/include/python")
        set(_dir "${Python3_INCLUDE_DIRS}")
      elseif(_dir MATCHES "^${_bad_prefix}/.*numpy")
        set(_dir "${Python3_NumPy_INCLUDE_DIRS}")
      endif()
      list(APPEND _fixed "${_dir}")
    endforeach()
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
  endforeach()
endfunction()
